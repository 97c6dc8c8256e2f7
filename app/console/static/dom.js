// Elements built from data, never from HTML strings: what the API returns is always text here.

/** `h("a", {href: "#/"}, "text", child)`: attributes set when not null; `on*` are listeners. */
export function h(tag, attributes, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes ?? {})) {
    if (value == null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(element, children);
  return element;
}

/** Replace `element`'s children: nulls left out, arrays flattened (unlike `replaceChildren`). */
export function fill(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children) {
    if (child == null || child === false) continue;
    if (Array.isArray(child)) append(element, child);
    else element.append(child instanceof Node ? child : String(child));
  }
}

/** A time as the reader's locale shows it, or a dash. */
export function when(value) {
  return value ? new Date(value).toLocaleString() : "—";
}

export function json(value) {
  // Focusable: a long value scrolls, and a keyboard must be able to scroll it.
  return h("pre", { class: "json", tabindex: "0" }, JSON.stringify(value, null, 2));
}

/** A table of `rows`, with `columns` as [heading, (row) => cell]. */
export function table(columns, rows, { empty = "Nothing yet.", label } = {}) {
  if (!rows.length) return h("p", { class: "empty" }, empty);
  return h(
    "table",
    { "aria-label": label ?? null },
    h("thead", null, h("tr", null, columns.map(([heading]) => h("th", { scope: "col" }, heading)))),
    h("tbody", null, rows.map((row) => h("tr", null, columns.map(([, cell]) => h("td", null, cell(row)))))),
  );
}

export function badge(status) {
  return h("span", { class: `badge status-${status}` }, status);
}
