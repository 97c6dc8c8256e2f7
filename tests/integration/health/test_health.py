from __future__ import annotations

import httpx

from app.core.config import Settings
from app.main import create_app
from tests.support import free_port


async def _readiness(settings: Settings, path: str = "/health/ready") -> httpx.Response:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.get(path)


def _with(settings: Settings, **groups: dict[str, object]) -> Settings:
    updated = {
        name: getattr(settings, name).model_copy(update=values) for name, values in groups.items()
    }
    return settings.model_copy(
        update={**updated, "health": settings.health.model_copy(update={"check_timeout_s": 1.0})}
    )


class TestLiveness:
    async def test_answers_ok(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/health/live")

        assert response.status_code == 200
        assert response.json() == {"status": "ok"}


class TestReadiness:
    async def test_ready_when_postgres_redis_and_s3_answer(self, settings: Settings) -> None:
        response = await _readiness(settings)

        assert response.status_code == 200
        body = response.json()
        assert body["status"] == "ok"
        assert {name: check["status"] for name, check in body["checks"].items()} == {
            "postgres": "ok",
            "redis": "ok",
            "s3": "ok",
        }

    async def test_names_postgres_when_it_does_not_answer(self, settings: Settings) -> None:
        dead = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/taskgate"

        response = await _readiness(_with(settings, database={"url": dead}))

        assert response.status_code == 503
        checks = response.json()["checks"]
        assert checks["postgres"]["status"] == "failed"
        assert checks["redis"]["status"] == checks["s3"]["status"] == "ok"

    async def test_names_redis_when_it_does_not_answer(self, settings: Settings) -> None:
        response = await _readiness(
            _with(settings, redis={"url": f"redis://127.0.0.1:{free_port()}/0"})
        )

        assert response.status_code == 503
        checks = response.json()["checks"]
        assert checks["redis"]["status"] == "failed"
        assert checks["postgres"]["status"] == checks["s3"]["status"] == "ok"

    async def test_a_probe_that_can_serve_without_redis_hears_degraded(
        self, settings: Settings
    ) -> None:
        dead_redis = _with(settings, redis={"url": f"redis://127.0.0.1:{free_port()}/0"})
        response = await _readiness(dead_redis, "/health/ready?degraded_ok=true")

        assert response.status_code == 200
        assert response.json()["status"] == "degraded"
        assert response.json()["checks"]["redis"]["status"] == "failed"
        # PostgreSQL away is never a degraded state: nothing can be accepted without it.
        dead = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/taskgate"
        both = _with(dead_redis, database={"url": dead})
        response = await _readiness(both, "/health/ready?degraded_ok=true")
        assert response.status_code == 503
        assert response.json()["status"] == "failed"

    async def test_names_s3_when_the_bucket_is_missing(self, settings: Settings) -> None:
        response = await _readiness(_with(settings, s3={"bucket": "no-such-bucket-here"}))

        assert response.status_code == 503
        assert response.json()["checks"]["s3"]["status"] == "failed"

    async def test_names_s3_when_its_credentials_are_wrong(self, settings: Settings) -> None:
        response = await _readiness(_with(settings, s3={"secret_access_key": "wrong-secret"}))

        assert response.status_code == 503
        assert response.json()["checks"]["s3"]["status"] == "failed"
