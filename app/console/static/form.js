// A form generated from a task type's input JSON Schema (as pydantic writes it): one field per
// property of a scalar type or an enum, a JSON text area for anything else. `read()` gives the
// input object; `showErrors()` puts the API's 422 errors at their fields.

import { h } from "./dom.js";

function resolve(schema, root) {
  if (schema && schema.$ref && schema.$ref.startsWith("#/$defs/")) {
    return resolve(root.$defs?.[schema.$ref.slice("#/$defs/".length)] ?? {}, root);
  }
  return schema ?? {};
}

// `X | None` is `anyOf: [X, {type: "null"}]`: the field is X, and may be left empty.
function unwrap(schema, root) {
  const resolved = resolve(schema, root);
  if (Array.isArray(resolved.anyOf)) {
    const options = resolved.anyOf.map((option) => resolve(option, root));
    const real = options.filter((option) => option.type !== "null");
    if (real.length === 1) {
      return { ...real[0], ...without(resolved, "anyOf"), nullable: real.length < options.length };
    }
  }
  return resolved;
}

function without(object, key) {
  const copy = { ...object };
  delete copy[key];
  return copy;
}

function kindOf(schema) {
  if (Array.isArray(schema.enum)) return "enum";
  if (["string", "integer", "number", "boolean"].includes(schema.type)) return schema.type;
  return "json";
}

let formCount = 0;

export function schemaForm(schema) {
  formCount += 1;
  const root = schema ?? {};
  const properties = root.properties ?? {};
  const required = new Set(root.required ?? []);
  const fields = new Map();
  const container = h("div", { class: "schema-form" });
  const names = Object.keys(properties);
  const freeForm = names.length === 0;

  for (const name of freeForm ? ["(input)"] : names) {
    const property = freeForm ? { type: "object" } : unwrap(properties[name], root);
    const kind = kindOf(property);
    const id = `field-${formCount}-${name.replace(/[^A-Za-z0-9_-]/g, "_")}`;
    // The property name, not pydantic's title ("N" for n): it is what the API and its errors say.
    const label = freeForm ? "Input (JSON object)" : name;
    let control;
    if (kind === "enum") {
      control = h(
        "select",
        { id, name },
        required.has(name) ? null : h("option", { value: "" }, "—"),
        ...property.enum.map((value) => h("option", { value: String(value) }, String(value))),
      );
      if (property.default != null) control.value = String(property.default);
    } else if (kind === "boolean") {
      control = h("input", { id, name, type: "checkbox" });
      control.checked = property.default === true;
    } else if (kind === "json") {
      control = h("textarea", { id, name, rows: "4", spellcheck: "false" });
      control.value = property.default !== undefined ? JSON.stringify(property.default) : freeForm ? "{}" : "";
    } else {
      const numeric = kind === "integer" || kind === "number";
      control = h("input", {
        id,
        name,
        type: numeric ? "number" : "text",
        step: kind === "integer" ? "1" : numeric ? "any" : null,
        min: property.minimum ?? null,
        max: property.maximum ?? null,
        placeholder: property.format === "uuid" ? "a file id" : null,
      });
      if (property.default != null) control.value = String(property.default);
    }
    if (required.has(name)) control.required = true;
    const message = h("p", { class: "field-error", id: `${id}-error`, role: "alert" });
    control.setAttribute("aria-describedby", `${id}-error`);
    const hint = property.description ? h("p", { class: "hint" }, property.description) : null;
    container.append(
      h("div", { class: "field", "data-field": freeForm ? "" : name }, h("label", { for: id }, label), control, hint, message),
    );
    fields.set(freeForm ? "" : name, { control, kind, message });
  }

  function read() {
    if (freeForm) return JSON.parse(fields.get("").control.value || "{}");
    const input = {};
    for (const [name, { control, kind }] of fields) {
      if (kind === "boolean") {
        input[name] = control.checked;
        continue;
      }
      const raw = control.value.trim();
      if (raw === "") continue; // left out: the schema's default applies
      if (kind === "integer" || kind === "number") input[name] = Number(raw);
      else if (kind === "json") input[name] = JSON.parse(raw);
      else input[name] = raw;
    }
    return input;
  }

  function clearErrors() {
    for (const { control, message } of fields.values()) {
      message.textContent = "";
      control.removeAttribute("aria-invalid");
    }
  }

  /** Put each `{loc: ["body", "input", name, …], msg}` at its field; the rest is returned. */
  function showErrors(errors) {
    clearErrors();
    const unplaced = [];
    for (const error of errors) {
      const loc = error.loc ?? [];
      const at = loc[0] === "body" && loc[1] === "input" ? loc.slice(2) : null;
      const field = at && (fields.get(String(at[0] ?? "")) ?? (freeForm ? fields.get("") : undefined));
      if (!field) {
        unplaced.push(error);
        continue;
      }
      field.message.textContent = field.message.textContent ? `${field.message.textContent}; ${error.msg}` : error.msg;
      field.control.setAttribute("aria-invalid", "true");
    }
    return unplaced;
  }

  return { element: container, read, showErrors, clearErrors };
}
