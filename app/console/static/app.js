// The console: a hash router over screens, each built from REST calls (API.md). A screen shows
// only the controls the caller's role allows; the API refuses the rest anyway.

import * as api from "./api.js";
import { badge, fill, h, json, table, when } from "./dom.js";
import { schemaForm } from "./form.js";

const TERMINAL = new Set(["succeeded", "failed", "canceled"]);
const STATUSES = ["queued", "running", "retrying", "succeeded", "failed", "canceled"];
const WEBHOOK_EVENTS = ["*", "task.created", "task.started", "task.succeeded", "task.failed", "task.canceled", "task.retrying", "file.ready"];
const main = document.getElementById("main");
const account = document.getElementById("account");

let projects = null; // the caller's projects, with their role: loaded once per sign-in
let taskTypes = null;
let screen = new AbortController(); // aborted when the screen changes: stops its polls

// ---- errors ------------------------------------------------------------------------------

function problemBox(error) {
  if (error.name === "AbortError") return null;
  if (!(error instanceof api.ApiError)) {
    return h("div", { class: "problem", role: "alert" }, h("strong", null, "Error"), " ", String(error.message || error));
  }
  const { problem } = error;
  return h(
    "div",
    { class: "problem", role: "alert" },
    h("strong", null, problem.title || "Error"),
    error.status ? ` (${error.status})` : "",
    problem.detail ? h("p", null, problem.detail) : null,
    error.requestId ? h("p", { class: "request-id" }, "Request id: ", h("code", null, error.requestId)) : null,
  );
}

/** Run `action`, showing a failure in `slot` (emptied first). */
async function attempt(slot, action) {
  slot.replaceChildren();
  try {
    return await action();
  } catch (error) {
    if (error instanceof api.ApiError && error.status === 401 && api.signedIn() && !api.usesApiKey()) {
      signOut("Your session ended: sign in again.");
      return undefined;
    }
    const box = problemBox(error);
    if (box) slot.append(box);
    return undefined;
  }
}

// ---- layout ------------------------------------------------------------------------------

function page(title, ...content) {
  document.title = `${title} · taskgate console`;
  fill(main, h("h1", null, title), ...content);
  main.focus({ preventScroll: true });
}

function projectOf(projectId) {
  return projects?.find((project) => project.id === projectId);
}

function projectNav(project, current) {
  const role = project.role;
  const links = [
    ["tasks", "Tasks", "viewer"],
    ["submit", "Submit", "member"],
    ["files", "Files", "viewer"],
    ["webhooks", "Webhooks", "admin"],
    ["members", "Members", "viewer"],
    ["keys", "API keys", "admin"],
    ["events", "Audit log", "viewer"],
  ].filter(([, , needed]) => api.atLeast(role, needed));
  return h(
    "nav",
    { class: "tabs", "aria-label": "Project" },
    h("span", { class: "project-name" }, project.name, " ", h("span", { class: "role" }, role)),
    links.map(([slug, label]) =>
      h("a", { href: `#/p/${project.id}/${slug}`, "aria-current": slug === current ? "page" : null }, label),
    ),
  );
}

function renderAccount() {
  account.replaceChildren();
  if (!api.signedIn()) return;
  account.append(
    h("span", null, api.who()),
    h("button", { type: "button", class: "link", onclick: () => signOut() }, "Sign out"),
  );
}

function signOut(message) {
  api.signOut();
  projects = null;
  renderAccount();
  location.hash = "#/";
  signInScreen(message);
}

// ---- sign-in -----------------------------------------------------------------------------

function signInScreen(message) {
  const failure = h("div");
  const email = h("input", { id: "email", name: "email", type: "email", autocomplete: "username", required: true });
  const password = h("input", { id: "password", name: "password", type: "password", autocomplete: "current-password", required: true });
  const key = h("input", { id: "api-key", name: "api-key", type: "password", autocomplete: "off", placeholder: "tg_…", required: true });
  async function after() {
    projects = null;
    renderAccount();
    route();
  }
  page(
    "Sign in",
    message ? h("p", { class: "notice", role: "status" }, message) : null,
    failure,
    h(
      "div",
      { class: "columns" },
      h(
        "form",
        {
          "aria-label": "Sign in with email",
          onsubmit: async (event) => {
            event.preventDefault();
            await attempt(failure, async () => {
              await api.signInWithPassword(email.value, password.value);
              await after();
            });
          },
        },
        h("h2", null, "With your email"),
        h("div", { class: "field" }, h("label", { for: "email" }, "Email"), email),
        h("div", { class: "field" }, h("label", { for: "password" }, "Password"), password),
        h("button", { type: "submit" }, "Sign in"),
      ),
      h(
        "form",
        {
          "aria-label": "Sign in with an API key",
          onsubmit: async (event) => {
            event.preventDefault();
            await attempt(failure, async () => {
              await api.signInWithKey(key.value.trim());
              await after();
            });
          },
        },
        h("h2", null, "With an API key"),
        h("div", { class: "field" }, h("label", { for: "api-key" }, "API key"), key),
        h("button", { type: "submit" }, "Use this key"),
      ),
    ),
    h("p", { class: "hint" }, "Credentials stay in this tab's memory: reloading the page signs you out."),
  );
}

// ---- projects ----------------------------------------------------------------------------

async function loadProjects() {
  if (projects) return projects;
  const found = [];
  let cursor = null;
  do {
    const page_ = await api.get(`/v1/projects${api.query({ limit: 200, cursor })}`);
    found.push(...page_.items);
    cursor = page_.next_cursor;
  } while (cursor);
  projects = found;
  return projects;
}

async function projectsScreen() {
  const failure = h("div");
  page("Projects", failure);
  const list = await attempt(failure, loadProjects);
  if (!list) return;
  main.append(
    table(
      [
        ["Project", (project) => h("a", { href: `#/p/${project.id}/tasks` }, project.name)],
        ["Your role", (project) => project.role],
        ["Created", (project) => when(project.created_at)],
      ],
      list,
      { empty: "You are in no project yet.", label: "Projects" },
    ),
  );
}

// ---- tasks -------------------------------------------------------------------------------

async function loadTaskTypes() {
  taskTypes ??= (await api.get("/v1/task-types")).items;
  return taskTypes;
}

function progressBar(task) {
  const value = task.status === "succeeded" ? 1 : task.progress ?? 0;
  return h(
    "progress",
    { max: "1", value: String(value), "aria-label": `Progress of task ${task.id}` },
    `${Math.round(value * 100)}%`,
  );
}

async function tasksScreen(project, params) {
  const signal = screen.signal;
  const failure = h("div");
  const status = h("select", { id: "filter-status", name: "status" }, h("option", { value: "" }, "any"), STATUSES.map((s) => h("option", { value: s }, s)));
  const type = h("select", { id: "filter-type", name: "type" }, h("option", { value: "" }, "any"));
  status.value = params.get("status") ?? "";
  const results = h("div", { "aria-live": "polite" });
  const cursors = [params.get("cursor") ?? null];
  page(
    "Tasks",
    projectNav(project, "tasks"),
    failure,
    h(
      "form",
      {
        class: "filters",
        "aria-label": "Filter tasks",
        onsubmit: (event) => {
          event.preventDefault();
          cursors.splice(0, cursors.length, null);
          load();
        },
      },
      h("div", { class: "field" }, h("label", { for: "filter-status" }, "Status"), status),
      h("div", { class: "field" }, h("label", { for: "filter-type" }, "Type"), type),
      h("button", { type: "submit" }, "Filter"),
    ),
    results,
  );
  const types = await attempt(failure, loadTaskTypes);
  for (const taskType of types ?? []) type.append(h("option", { value: taskType.name }, taskType.name));
  type.value = params.get("type") ?? "";

  let timer = null;
  async function load() {
    clearTimeout(timer);
    const cursor = cursors[cursors.length - 1];
    const path = `/v1/projects/${project.id}/tasks${api.query({ status: status.value, type: type.value, cursor, limit: 25 })}`;
    const found = await attempt(failure, () => api.get(path, { signal }));
    if (!found || signal.aborted) return;
    const canCancel = api.atLeast(project.role, "member");
    results.replaceChildren(
      table(
        [
          ["Task", (task) => h("a", { href: `#/t/${project.id}/${task.id}` }, h("code", null, task.id.slice(0, 8)))],
          ["Type", (task) => task.type],
          ["Status", (task) => badge(task.status)],
          ["Progress", progressBar],
          ["Created", (task) => when(task.created_at)],
          ...(canCancel
            ? [["Actions", (task) => (TERMINAL.has(task.status) ? "" : h("button", { type: "button", class: "small", onclick: () => cancel(task) }, "Cancel"))]]
            : []),
        ],
        found.items,
        { empty: "No tasks match.", label: "Tasks" },
      ),
      h(
        "div",
        { class: "pager" },
        cursors.length > 1 ? h("button", { type: "button", onclick: () => { cursors.pop(); load(); } }, "Newer") : null,
        found.next_cursor ? h("button", { type: "button", onclick: () => { cursors.push(found.next_cursor); load(); } }, "Older") : null,
      ),
    );
    // Live status: while a task shown is unfinished, the page is read again every two seconds.
    if (found.items.some((task) => !TERMINAL.has(task.status))) timer = setTimeout(load, 2000);
  }
  async function cancel(task) {
    await attempt(failure, () => api.post(`/v1/tasks/${task.id}/cancel`));
    load();
  }
  signal.addEventListener("abort", () => clearTimeout(timer));
  await load();
}

function fileIds(value, found = new Set()) {
  if (Array.isArray(value)) value.forEach((item) => fileIds(item, found));
  else if (value && typeof value === "object") {
    for (const [key, item] of Object.entries(value)) {
      if ((key === "file_id" || key.endsWith("_file_id")) && typeof item === "string") found.add(item);
      else fileIds(item, found);
    }
  }
  return found;
}

function fileCard(file) {
  const image = file.content_type.startsWith("image/") && file.download_url;
  return h(
    "figure",
    { class: "file-card" },
    image ? h("img", { src: file.download_url, alt: file.filename, class: "thumbnail" }) : null,
    h(
      "figcaption",
      null,
      file.download_url ? h("a", { href: file.download_url, download: file.filename }, file.filename) : file.filename,
      ` · ${file.content_type} · ${file.size} bytes`,
    ),
  );
}

async function taskScreen(project, taskId) {
  const signal = screen.signal;
  const failure = h("div");
  const body = h("div");
  page("Task", projectNav(project, "tasks"), failure, body);
  let shownFiles = "";
  let task = await attempt(failure, () => api.get(`/v1/tasks/${taskId}`, { signal }));
  while (task && !signal.aborted) {
    await show(task);
    if (TERMINAL.has(task.status)) break;
    // Long-poll, answered at once when the task finishes; every 2 s otherwise, for progress.
    const next = await attempt(failure, () => api.get(`/v1/tasks/${taskId}?wait=2`, { signal }));
    if (!next) break;
    task = next;
  }

  async function show(current) {
    const canWrite = api.atLeast(project.role, "member");
    const events = await attempt(failure, () => api.get(`/v1/tasks/${taskId}/events?limit=200`, { signal }));
    if (signal.aborted) return;
    const actions = h("div", { class: "actions" });
    if (canWrite && !TERMINAL.has(current.status)) {
      actions.append(
        h("button", {
          type: "button",
          onclick: async () => {
            const canceled = await attempt(failure, () => api.post(`/v1/tasks/${taskId}/cancel`));
            if (canceled) show(canceled);
          },
        }, current.cancel_requested_at ? "Cancel requested" : "Cancel"),
      );
    }
    if (canWrite && (current.status === "failed" || current.status === "canceled")) {
      actions.append(
        h("button", {
          type: "button",
          onclick: async () => {
            const again = await attempt(failure, () =>
              api.post(`/v1/projects/${project.id}/tasks`, { type: current.type, input: current.input, priority: current.priority }),
            );
            if (again) location.hash = `#/t/${project.id}/${again.id}`;
          },
        }, "Re-submit as a new task"),
      );
    }
    const outputs = h("div", { class: "outputs" });
    fill(
      body,
      h(
        "dl",
        { class: "facts" },
        h("dt", null, "Id"), h("dd", null, h("code", null, current.id)),
        h("dt", null, "Type"), h("dd", null, current.type),
        h("dt", null, "Status"), h("dd", { "data-testid": "task-status" }, badge(current.status)),
        h("dt", null, "Progress"), h("dd", null, progressBar(current), current.progress_message ? ` ${current.progress_message}` : ""),
        h("dt", null, "Attempts"), h("dd", null, `${current.attempt} of ${current.max_attempts}`),
        h("dt", null, "Priority"), h("dd", null, current.priority),
        h("dt", null, "Created"), h("dd", null, when(current.created_at)),
        h("dt", null, "Started"), h("dd", null, when(current.started_at)),
        h("dt", null, "Finished"), h("dd", null, when(current.finished_at)),
      ),
      actions,
      h("h2", null, "Input"),
      json(current.input),
      current.error ? [h("h2", null, "Error"), h("div", { class: "problem" }, h("strong", null, current.error.type), h("p", null, current.error.message))] : null,
      current.status === "succeeded"
        ? [
            h("h2", null, "Result"),
            current.result_url ? h("p", null, h("a", { href: current.result_url }, "Download the result (JSON)")) : json(current.result),
            outputs,
          ]
        : null,
      h("h2", null, "Events"),
      events
        ? h("ol", { class: "timeline" }, events.items.slice().reverse().map((event) =>
            h("li", null, h("time", { datetime: event.at }, when(event.at)), " ", h("strong", null, event.kind), Object.keys(event.data ?? {}).length ? h("code", null, ` ${JSON.stringify(event.data)}`) : null)))
        : null,
    );
    if (current.status === "succeeded") {
      const ids = [...fileIds(current.result)];
      shownFiles = ids.join(",");
      for (const id of ids) {
        const file = await attempt(failure, () => api.get(`/v1/files/${id}`, { signal }));
        // The files this task wrote, not the inputs its result may name again.
        if (file && file.task_id === current.id && shownFiles === ids.join(",")) outputs.append(fileCard(file));
      }
    }
  }
}

// ---- submit ------------------------------------------------------------------------------

async function submitScreen(project, params) {
  const failure = h("div");
  const select = h("select", { id: "task-type", name: "type" });
  const description = h("p", { class: "hint" });
  const fieldsSlot = h("div");
  const priority = h("select", { id: "priority", name: "priority" }, ["default", "high", "low"].map((p) => h("option", { value: p }, p)));
  let form = null;
  let types = [];
  function choose() {
    const chosen = types.find((taskType) => taskType.name === select.value);
    description.textContent = chosen?.description ?? "";
    form = schemaForm(chosen?.input_schema ?? {});
    fieldsSlot.replaceChildren(form.element);
  }
  page(
    "Submit a task",
    projectNav(project, "submit"),
    failure,
    h(
      "form",
      {
        "aria-label": "Submit a task",
        novalidate: true,
        onsubmit: async (event) => {
          event.preventDefault();
          failure.replaceChildren();
          form.clearErrors();
          let input;
          try {
            input = form.read();
          } catch (error) {
            failure.append(problemBox(new Error(`The input is not valid JSON: ${error.message}`)));
            return;
          }
          try {
            const task = await api.post(`/v1/projects/${project.id}/tasks`, { type: select.value, input, priority: priority.value });
            location.hash = `#/t/${project.id}/${task.id}`;
          } catch (error) {
            const unplaced = error instanceof api.ApiError ? form.showErrors(error.fieldErrors) : [];
            if (!(error instanceof api.ApiError) || unplaced.length || !error.fieldErrors.length) failure.append(problemBox(error));
          }
        },
      },
      h("div", { class: "field" }, h("label", { for: "task-type" }, "Type"), select, description),
      fieldsSlot,
      h("div", { class: "field" }, h("label", { for: "priority" }, "Priority"), priority),
      h("button", { type: "submit" }, "Submit"),
    ),
  );
  types = (await attempt(failure, loadTaskTypes)) ?? [];
  for (const taskType of types) select.append(h("option", { value: taskType.name }, taskType.name));
  if (params.get("type")) select.value = params.get("type");
  select.addEventListener("change", choose);
  choose();
}

// ---- files -------------------------------------------------------------------------------

async function filesScreen(project) {
  const signal = screen.signal;
  const failure = h("div");
  const list = h("div");
  const canUpload = api.atLeast(project.role, "member");
  const chooser = h("input", { id: "upload-file", name: "file", type: "file" });
  const progress = h("progress", { max: "1", value: "0", "aria-label": "Upload progress", hidden: true });
  const uploadForm = canUpload
    ? h(
        "form",
        {
          class: "filters",
          "aria-label": "Upload a file",
          onsubmit: async (event) => {
            event.preventDefault();
            const file = chooser.files[0];
            if (!file) return;
            progress.hidden = false;
            progress.value = 0;
            await attempt(failure, async () => {
              const type = file.type || "application/octet-stream";
              const upload = await api.post(`/v1/projects/${project.id}/files`, { filename: file.name, content_type: type, size: file.size });
              await api.putWithProgress(upload.upload_url, file, upload.headers, (done) => { progress.value = done; });
              await api.post(`/v1/files/${upload.id}/complete`);
            });
            progress.hidden = true;
            chooser.value = "";
            await load();
          },
        },
        h("div", { class: "field" }, h("label", { for: "upload-file" }, "File"), chooser),
        h("button", { type: "submit" }, "Upload"),
        progress,
      )
    : null;
  page("Files", projectNav(project, "files"), failure, uploadForm, list);
  async function load() {
    const found = await attempt(failure, () => api.get(`/v1/projects/${project.id}/files?limit=100`, { signal }));
    if (!found) return;
    list.replaceChildren(
      table(
        [
          ["File", (file) => (file.download_url ? h("a", { href: file.download_url, download: file.filename }, file.filename) : file.filename)],
          ["Preview", (file) => (file.content_type.startsWith("image/") && file.download_url ? h("img", { src: file.download_url, alt: file.filename, class: "thumbnail small" }) : "")],
          ["Id", (file) => h("code", null, file.id)],
          ["Type", (file) => file.content_type],
          ["Size", (file) => `${file.size} bytes`],
          ["Status", (file) => file.status],
          ["Created", (file) => when(file.created_at)],
        ],
        found.items,
        { empty: "No files yet.", label: "Files" },
      ),
    );
  }
  await load();
}

// ---- webhooks ----------------------------------------------------------------------------

function secretNotice(secret) {
  return h(
    "div",
    { class: "notice", role: "status" },
    h("strong", null, "Signing secret (shown once, store it now): "),
    h("code", { "data-testid": "secret" }, secret),
  );
}

async function webhooksScreen(project) {
  const failure = h("div");
  const shown = h("div");
  const list = h("div");
  const url = h("input", { id: "webhook-url", name: "url", type: "url", required: true, placeholder: "https://…" });
  const checks = WEBHOOK_EVENTS.map((kind, index) =>
    h("label", { class: "check" }, h("input", { type: "checkbox", value: kind, checked: kind === "task.succeeded", name: `event-${index}` }), ` ${kind}`),
  );
  page(
    "Webhooks",
    projectNav(project, "webhooks"),
    failure,
    shown,
    h(
      "form",
      {
        "aria-label": "Add a webhook",
        onsubmit: async (event) => {
          event.preventDefault();
          const events = checks.map((label) => label.querySelector("input")).filter((box) => box.checked).map((box) => box.value);
          const created = await attempt(failure, () => api.post(`/v1/projects/${project.id}/webhooks`, { url: url.value, events }));
          if (created) {
            shown.replaceChildren(secretNotice(created.secret));
            url.value = "";
            await load();
          }
        },
      },
      h("h2", null, "Add an endpoint"),
      h("div", { class: "field" }, h("label", { for: "webhook-url" }, "URL"), url),
      h("fieldset", null, h("legend", null, "Events"), checks),
      h("button", { type: "submit" }, "Add webhook"),
    ),
    list,
  );
  async function load() {
    const found = await attempt(failure, () => api.get(`/v1/projects/${project.id}/webhooks`));
    if (!found) return;
    list.replaceChildren(
      h("h2", null, "Endpoints"),
      table(
        [
          ["URL", (endpoint) => h("a", { href: `#/w/${project.id}/${endpoint.id}` }, endpoint.url)],
          ["Events", (endpoint) => endpoint.events.join(", ")],
          ["Enabled", (endpoint) => (endpoint.enabled ? "yes" : `no${endpoint.disabled_reason ? ` (${endpoint.disabled_reason})` : ""}`)],
          ["Created", (endpoint) => when(endpoint.created_at)],
        ],
        found.items,
        { empty: "No endpoints yet.", label: "Webhook endpoints" },
      ),
    );
  }
  await load();
}

async function webhookScreen(project, endpointId) {
  const signal = screen.signal;
  const failure = h("div");
  const shown = h("div");
  const details = h("div");
  const deliveries = h("div", { "aria-live": "polite" });
  // Outside `deliveries`, which is read again every 3 s: the attempts shown stay open.
  const attempts = h("div");
  page("Webhook", projectNav(project, "webhooks"), failure, shown, details, deliveries, attempts);
  const endpoint = await attempt(failure, () => api.get(`/v1/webhooks/${endpointId}`, { signal }));
  if (!endpoint) return;
  details.append(
    h("dl", { class: "facts" },
      h("dt", null, "URL"), h("dd", null, endpoint.url),
      h("dt", null, "Events"), h("dd", null, endpoint.events.join(", ")),
      h("dt", null, "Enabled"), h("dd", null, endpoint.enabled ? "yes" : "no")),
    h("div", { class: "actions" },
      h("button", {
        type: "button",
        onclick: async () => {
          const rotated = await attempt(failure, () => api.post(`/v1/webhooks/${endpointId}/rotate-secret`));
          if (rotated) shown.replaceChildren(secretNotice(rotated.secret));
        },
      }, "Rotate secret")),
  );
  let timer = null;
  async function load() {
    const found = await attempt(failure, () => api.get(`/v1/webhooks/${endpointId}/deliveries?limit=50`, { signal }));
    if (!found || signal.aborted) return;
    deliveries.replaceChildren(
      h("h2", null, "Deliveries"),
      table(
        [
          ["Event", (delivery) => delivery.event_type],
          ["Status", (delivery) => badge(delivery.status)],
          ["Attempts", (delivery) => String(delivery.attempt)],
          ["Answer", (delivery) => (delivery.response_status ? String(delivery.response_status) : delivery.last_error ?? "—")],
          ["Next attempt", (delivery) => when(delivery.next_attempt_at)],
          ["Created", (delivery) => when(delivery.created_at)],
          ["Actions", (delivery) => h("span", null,
            h("button", { type: "button", class: "small", onclick: () => attemptsOf(delivery) }, "Attempts"),
            " ",
            h("button", { type: "button", class: "small", onclick: async () => { await attempt(failure, () => api.post(`/v1/webhooks/${endpointId}/deliveries/${delivery.id}/redeliver`)); load(); } }, "Redeliver"))],
        ],
        found.items,
        { empty: "No deliveries yet.", label: "Deliveries" },
      ),
    );
    timer = setTimeout(load, 3000);
  }
  async function attemptsOf(delivery) {
    const detail = await attempt(failure, () => api.get(`/v1/webhooks/${endpointId}/deliveries/${delivery.id}`));
    if (!detail) return;
    attempts.replaceChildren(
      h("h3", null, `Attempts of ${delivery.event_type}`),
      table(
        [
          ["#", (row) => String(row.attempt)],
          ["Started", (row) => when(row.started_at)],
          ["Latency", (row) => `${row.latency_ms} ms`],
          ["Answer", (row) => (row.response_status ? String(row.response_status) : row.error ?? "—")],
        ],
        detail.attempts,
        { label: "Attempts" },
      ),
      json(detail.payload),
    );
  }
  signal.addEventListener("abort", () => clearTimeout(timer));
  await load();
}

// ---- members and API keys ----------------------------------------------------------------

async function membersScreen(project) {
  const failure = h("div");
  const list = h("div");
  const isAdmin = api.atLeast(project.role, "admin");
  const email = h("input", { id: "member-email", name: "email", type: "email", required: true });
  const role = h("select", { id: "member-role", name: "role" }, ["viewer", "member", "admin"].map((r) => h("option", { value: r }, r)));
  page(
    "Members",
    projectNav(project, "members"),
    failure,
    isAdmin
      ? h("form", {
          class: "filters",
          "aria-label": "Add a member",
          onsubmit: async (event) => {
            event.preventDefault();
            if (await attempt(failure, () => api.post(`/v1/projects/${project.id}/members`, { email: email.value, role: role.value }))) {
              email.value = "";
              await load();
            }
          },
        },
        h("div", { class: "field" }, h("label", { for: "member-email" }, "Email"), email),
        h("div", { class: "field" }, h("label", { for: "member-role" }, "Role"), role),
        h("button", { type: "submit" }, "Add member"))
      : null,
    list,
  );
  async function load() {
    const found = await attempt(failure, () => api.get(`/v1/projects/${project.id}/members?limit=200`));
    if (!found) return;
    list.replaceChildren(
      table(
        [
          ["Email", (member) => member.email],
          ["Role", (member) => {
            if (!isAdmin || member.role === "owner") return member.role;
            const choice = h("select", { "aria-label": `Role of ${member.email}` }, ["viewer", "member", "admin"].map((r) => h("option", { value: r }, r)));
            choice.value = member.role;
            choice.addEventListener("change", async () => {
              await attempt(failure, () => api.patch(`/v1/projects/${project.id}/members/${member.user_id}`, { role: choice.value }));
              await load();
            });
            return choice;
          }],
          ["Joined", (member) => when(member.created_at)],
          ...(isAdmin
            ? [["Actions", (member) => (member.role === "owner" ? "" : h("button", { type: "button", class: "small", onclick: async () => { await attempt(failure, () => api.del(`/v1/projects/${project.id}/members/${member.user_id}`)); await load(); } }, "Remove"))]]
            : []),
        ],
        found.items,
        { label: "Members" },
      ),
    );
  }
  await load();
}

async function keysScreen(project) {
  const failure = h("div");
  const shown = h("div");
  const list = h("div");
  const name = h("input", { id: "key-name", name: "name", required: true });
  const write = h("input", { id: "key-write", name: "write", type: "checkbox", checked: true });
  page(
    "API keys",
    projectNav(project, "keys"),
    failure,
    shown,
    h("form", {
      class: "filters",
      "aria-label": "Create an API key",
      onsubmit: async (event) => {
        event.preventDefault();
        const scopes = write.checked ? ["read", "write"] : ["read"];
        const created = await attempt(failure, () => api.post(`/v1/projects/${project.id}/api-keys`, { name: name.value, scopes }));
        if (created) {
          shown.replaceChildren(h("div", { class: "notice", role: "status" }, h("strong", null, "New key (shown once, store it now): "), h("code", { "data-testid": "secret" }, created.key)));
          name.value = "";
          await load();
        }
      },
    },
    h("div", { class: "field" }, h("label", { for: "key-name" }, "Name"), name),
    h("div", { class: "field" }, h("label", { for: "key-write" }, "May write"), write),
    h("button", { type: "submit" }, "Create key")),
    list,
  );
  async function load() {
    const found = await attempt(failure, () => api.get(`/v1/projects/${project.id}/api-keys?limit=200`));
    if (!found) return;
    list.replaceChildren(
      table(
        [
          ["Name", (key) => key.name],
          ["Prefix", (key) => h("code", null, key.prefix)],
          ["Scopes", (key) => key.scopes.join(", ")],
          ["Last used", (key) => when(key.last_used_at)],
          ["Revoked", (key) => when(key.revoked_at)],
          ["Actions", (key) => (key.revoked_at ? "" : h("button", { type: "button", class: "small", onclick: async () => { await attempt(failure, () => api.del(`/v1/projects/${project.id}/api-keys/${key.id}`)); await load(); } }, "Revoke"))],
        ],
        found.items,
        { empty: "No API keys yet.", label: "API keys" },
      ),
    );
  }
  await load();
}

// ---- audit log ---------------------------------------------------------------------------

async function eventsScreen(project) {
  const signal = screen.signal;
  const failure = h("div");
  const results = h("div");
  const kind = h("input", { id: "event-kind", name: "kind", placeholder: "task.failed" });
  const subject = h("input", { id: "event-subject", name: "subject_id", placeholder: "an id" });
  const since = h("input", { id: "event-since", name: "since", type: "datetime-local" });
  const cursors = [null];
  page(
    "Audit log",
    projectNav(project, "events"),
    failure,
    h("form", {
      class: "filters",
      "aria-label": "Filter events",
      onsubmit: (event) => {
        event.preventDefault();
        cursors.splice(0, cursors.length, null);
        load();
      },
    },
    h("div", { class: "field" }, h("label", { for: "event-kind" }, "Kind"), kind),
    h("div", { class: "field" }, h("label", { for: "event-subject" }, "Subject"), subject),
    h("div", { class: "field" }, h("label", { for: "event-since" }, "Since"), since),
    h("button", { type: "submit" }, "Filter")),
    results,
  );
  async function load() {
    const params = {
      kind: kind.value.trim(),
      subject_id: subject.value.trim(),
      since: since.value ? new Date(since.value).toISOString() : "",
      cursor: cursors[cursors.length - 1],
      limit: 50,
    };
    const found = await attempt(failure, () => api.get(`/v1/projects/${project.id}/events${api.query(params)}`, { signal }));
    if (!found) return;
    results.replaceChildren(
      table(
        [
          ["At", (event) => when(event.at)],
          ["Kind", (event) => event.kind],
          ["Actor", (event) => `${event.actor.type}${event.actor.id ? ` ${event.actor.id.slice(0, 8)}` : ""}`],
          ["Subject", (event) => (event.subject_id ? h("code", null, event.subject_id) : "—")],
          ["Data", (event) => h("code", null, JSON.stringify(event.data ?? {}))],
          ["Request", (event) => (event.request_id ? h("code", null, event.request_id) : "—")],
        ],
        found.items,
        { empty: "No events match.", label: "Events" },
      ),
      h("div", { class: "pager" },
        cursors.length > 1 ? h("button", { type: "button", onclick: () => { cursors.pop(); load(); } }, "Newer") : null,
        found.next_cursor ? h("button", { type: "button", onclick: () => { cursors.push(found.next_cursor); load(); } }, "Older") : null),
    );
  }
  await load();
}

// ---- routing -----------------------------------------------------------------------------

const SCREENS = {
  tasks: tasksScreen,
  submit: submitScreen,
  files: filesScreen,
  webhooks: webhooksScreen,
  members: membersScreen,
  keys: keysScreen,
  events: eventsScreen,
};

async function route() {
  screen.abort();
  screen = new AbortController();
  if (!api.signedIn()) {
    signInScreen();
    return;
  }
  const [path, search = ""] = location.hash.replace(/^#/, "").split("?");
  const params = new URLSearchParams(search);
  const parts = path.split("/").filter(Boolean);
  const failure = h("div");
  if (parts.length === 0) {
    await projectsScreen();
    return;
  }
  const list = await attempt(failure, loadProjects);
  const project = list && projectOf(parts[1]);
  if (!project) {
    page("Not found", failure, h("p", null, "No such project among yours. ", h("a", { href: "#/" }, "Your projects")));
    return;
  }
  if (parts[0] === "p" && SCREENS[parts[2]]) await SCREENS[parts[2]](project, params);
  else if (parts[0] === "t" && parts[2]) await taskScreen(project, parts[2]);
  else if (parts[0] === "w" && parts[2]) await webhookScreen(project, parts[2]);
  else page("Not found", h("p", null, h("a", { href: "#/" }, "Your projects")));
}

window.addEventListener("hashchange", route);
renderAccount();
route();
