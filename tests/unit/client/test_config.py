"""Where the CLI connects: flags (or their variables) over the profile, over the defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.client.config import DEFAULT_URL, config_path, load_profile, resolve
from app.client.errors import ApiError, ConfigError

PROJECT = "6f1d2c9e-4d3b-4a8e-9c51-0d7a4c2b9e10"


@pytest.fixture
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    return tmp_path / "taskgate" / "config.toml"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


class TestConfigPath:
    def test_is_under_xdg_config_home(self, config_home: Path) -> None:
        assert config_path() == config_home

    def test_falls_back_to_dot_config_when_xdg_config_home_is_unset_or_relative(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("HOME", str(tmp_path))
        monkeypatch.setenv("XDG_CONFIG_HOME", "relative/dir")

        assert config_path() == tmp_path / ".config" / "taskgate" / "config.toml"


class TestResolve:
    @pytest.mark.usefixtures("config_home")
    def test_without_file_or_flags_is_the_local_api_and_nothing_else(self) -> None:
        connection = resolve(url=None, api_key=None, project=None, profile=None)

        assert (connection.url, connection.api_key, connection.project) == (DEFAULT_URL, None, None)

    def test_reads_the_default_profile(self, config_home: Path) -> None:
        _write(
            config_home,
            f'[profiles.default]\nurl = "https://tg.example/"\napi_key = "tg_a"\nproject = "{PROJECT}"\n',
        )

        connection = resolve(url=None, api_key=None, project=None, profile=None)

        assert (connection.url, connection.api_key) == ("https://tg.example", "tg_a")
        assert str(connection.require_project()) == PROJECT

    def test_given_values_win_over_the_profile_key_by_key(self, config_home: Path) -> None:
        _write(config_home, '[profiles.ci]\nurl = "https://a.example"\napi_key = "tg_profile"\n')

        connection = resolve(url=None, api_key="tg_flag", project=None, profile="ci")

        assert (connection.url, connection.api_key) == ("https://a.example", "tg_flag")

    def test_a_named_profile_must_exist(self, config_home: Path) -> None:
        _write(config_home, '[profiles.default]\nurl = "https://a.example"\n')

        with pytest.raises(ConfigError, match=r"has no \[profiles\.staging\]"):
            resolve(url=None, api_key=None, project=None, profile="staging")

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("[profiles.default\n", "not valid TOML"),
            ('[profiles.default]\ntoken = "x"\n', "profiles.default.token is not a setting"),
            ("[profiles.default]\nurl = 8000\n", "profiles.default.url must be a string"),
            ('profiles = "x"\n', "must be a table"),
        ],
    )
    def test_a_broken_file_is_refused_with_what_is_wrong(
        self, config_home: Path, text: str, message: str
    ) -> None:
        _write(config_home, text)

        with pytest.raises(ConfigError, match=message):
            resolve(url=None, api_key=None, project=None, profile=None)

    @pytest.mark.usefixtures("config_home")
    def test_refuses_a_url_that_is_not_http(self) -> None:
        with pytest.raises(ConfigError, match="http:// or https://"):
            resolve(url="ftp://files.example", api_key=None, project=None, profile=None)

    @pytest.mark.usefixtures("config_home")
    def test_a_project_must_be_a_uuid(self) -> None:
        connection = resolve(url=None, api_key="k", project="my-project", profile=None)

        with pytest.raises(ConfigError, match="not a UUID"):
            connection.require_project()


class TestLoadProfile:
    def test_an_absent_file_is_empty_unless_required(self, tmp_path: Path) -> None:
        assert load_profile("default", required=False, path=tmp_path / "none.toml") == {}
        with pytest.raises(ConfigError, match="does not exist"):
            load_profile("default", required=True, path=tmp_path / "none.toml")


class TestApiError:
    def test_names_title_detail_field_errors_and_request_id(self) -> None:
        problem = {
            "title": "Validation failed",
            "detail": "The request is invalid",
            "request_id": "req-1",
            "errors": [{"loc": ["body", "type"], "msg": "Field required"}],
        }

        error = ApiError(422, problem, "", None)

        assert str(error) == (
            "Validation failed: The request is invalid; body.type: Field required "
            "(request id req-1)"
        )

    def test_an_answer_without_a_problem_shows_its_status_and_text(self) -> None:
        error = ApiError(502, None, "<html>\n bad gateway </html>", "req-2")

        assert str(error) == "HTTP 502: <html> bad gateway </html> (request id req-2)"
