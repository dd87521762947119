// A Block Kit renderer for exactly what the bot sends: section (text, fields, accessory), context, divider, header,
// actions, input; buttons (styles, URLs, confirm dialogs), static, external and conversation selects, radio buttons,
// checkboxes, plain and multiline text inputs. Anything else is drawn as a visible "unsupported" box.
//
// `ctx` carries what a surface needs: names (user ID -> name), channels (ID -> name), values (a modal's
// state.values, mutated as the person types), errors (block_id -> message), and the callbacks
// act(element, blockId, extra), suggest(element, blockId, query) and confirm(dialog).

import { escapeHtml, textObject } from "./mrkdwn.js";

export const BLOCKS = ["section", "context", "divider", "header", "actions", "input"];
export const ELEMENTS = [
  "button", "static_select", "external_select", "conversations_select", "multi_conversations_select",
  "channels_select", "multi_channels_select", "radio_buttons", "checkboxes", "plain_text_input",
];

// element type -> [state key, initial key, empty]; the same shapes Slack puts in view.state.values
const STATE = {
  plain_text_input: ["value", "initial_value", null],
  static_select: ["selected_option", "initial_option", null],
  external_select: ["selected_option", "initial_option", null],
  radio_buttons: ["selected_option", "initial_option", null],
  checkboxes: ["selected_options", "initial_options", []],
  conversations_select: ["selected_conversation", "initial_conversation", null],
  multi_conversations_select: ["selected_conversations", "initial_conversations", []],
  channels_select: ["selected_channel", "initial_channel", null],
  multi_channels_select: ["selected_channels", "initial_channels", []],
};

function el(tag, attrs = {}, html) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    node.setAttribute(key, value === true ? "" : String(value));
  }
  if (html !== undefined) node.innerHTML = html;
  return node;
}

function text(obj, ctx) {
  return textObject(obj, ctx);
}

export function unsupported(what, detail) {
  const box = el("div", { class: "unsupported", role: "note" });
  box.textContent = `Unsupported ${what}: ${detail} (the playground does not draw it)`;
  return box;
}

/** The elements whose value Slack keeps in state.values: [blockId, element] pairs. */
export function statefulElements(blocks) {
  const found = [];
  for (const block of blocks ?? []) {
    const candidates = block.type === "input" ? [block.element]
      : block.type === "actions" ? block.elements ?? []
        : block.type === "section" ? [block.accessory] : [];
    for (const element of candidates) {
      if (element && STATE[element.type] && element.action_id) found.push([block.block_id ?? "", element]);
    }
  }
  return found;
}

/** state.values for a view: what the person typed (`kept`, same block and action IDs) wins, as Slack keeps it on
 *  views.update; then what Slack stored; then the elements' initial values. */
export function stateFor(view, kept = {}) {
  const values = {};
  const stored = view.state?.values ?? {};
  for (const [blockId, element] of statefulElements(view.blocks)) {
    const [key, initial, empty] = STATE[element.type];
    const previous = kept[blockId]?.[element.action_id] ?? stored[blockId]?.[element.action_id];
    const value = previous ? previous[key] : element[initial] ?? empty;
    (values[blockId] ??= {})[element.action_id] = { type: element.type, [key]: structuredClone(value ?? empty) };
  }
  return values;
}

function controlId(blockId, actionId) {
  return `f-${blockId}-${actionId}`.replace(/[^A-Za-z0-9_-]/g, "_");
}

function setState(ctx, blockId, element, key, value) {
  if (!ctx.values) return;
  (ctx.values[blockId] ??= {})[element.action_id] = { type: element.type, [key]: value };
}

function allOptions(element) {
  return [...(element.options ?? []), ...(element.option_groups ?? []).flatMap((g) => g.options ?? [])];
}

function dispatches(block, ctx) {
  return block.type !== "input" || block.dispatch_action === true || ctx.surface === "message";
}

// ---------------------------------------------------------------- elements

function button(element, blockId, ctx) {
  const attrs = {
    class: `btn ${element.style ?? ""}`.trim(),
    "data-action-id": element.action_id,
    type: "button",
  };
  const node = element.url
    ? el("a", { ...attrs, href: element.url, target: "_blank", rel: "noopener", role: "button" })
    : el("button", attrs);
  node.innerHTML = text(element.text, ctx);
  node.addEventListener("click", async (event) => {
    if (element.confirm && !(await ctx.confirm(element.confirm))) {
      event.preventDefault();
      return;
    }
    if (element.url) {  // Slack opens the link and still tells the app about the click
      ctx.act(element, blockId, { value: element.value });
      return;
    }
    node.disabled = true;
    node.classList.add("busy");
    try {
      await ctx.act(element, blockId, { value: element.value });
    } finally {
      node.disabled = false;
      node.classList.remove("busy");
    }
  });
  return node;
}

function staticSelect(element, block, ctx) {
  const blockId = block.block_id;
  const select = el("select", { id: controlId(blockId, element.action_id), "data-action-id": element.action_id });
  select.append(el("option", { value: "" }, escapeHtml(element.placeholder?.text ?? "Select an item")));
  const addOption = (parent, option) => {
    parent.append(el("option", { value: option.value }, text(option.text, ctx)));
  };
  for (const option of element.options ?? []) addOption(select, option);
  for (const group of element.option_groups ?? []) {
    const node = el("optgroup", { label: group.label?.text ?? "" });
    for (const option of group.options ?? []) addOption(node, option);
    select.append(node);
  }
  const chosen = ctx.values?.[blockId]?.[element.action_id]?.selected_option ?? element.initial_option;
  select.value = chosen?.value ?? "";
  select.addEventListener("change", () => {
    const option = allOptions(element).find((o) => o.value === select.value) ?? null;
    setState(ctx, blockId, element, "selected_option", option);
    if (option && dispatches(block, ctx)) ctx.act(element, blockId, { selected_option: option });
  });
  return select;
}

function externalSelect(element, block, ctx) {
  const blockId = block.block_id;
  const box = el("div", { class: "combo" });
  const id = controlId(blockId, element.action_id);
  const input = el("input", {
    id, type: "text", role: "combobox", autocomplete: "off", "aria-expanded": "false",
    "aria-controls": `${id}-list`, "data-action-id": element.action_id,
    placeholder: element.placeholder?.text ?? "Type to search",
  });
  const list = el("ul", { id: `${id}-list`, role: "listbox", class: "combo-list", hidden: true });
  box.append(input, list);
  const chosen = () => ctx.values?.[blockId]?.[element.action_id]?.selected_option ?? element.initial_option;
  const showChosen = () => { input.value = chosen()?.text?.text ?? ""; };
  showChosen();
  const minLength = element.min_query_length ?? 3;
  let asked = 0;
  const close = () => { list.hidden = true; input.setAttribute("aria-expanded", "false"); };
  const choose = (option) => {
    setState(ctx, blockId, element, "selected_option", option);
    showChosen();
    close();
    if (dispatches(block, ctx)) ctx.act(element, blockId, { selected_option: option });
  };
  const ask = async () => {
    const query = input.value === (chosen()?.text?.text ?? null) ? "" : input.value;
    if (query.length < minLength) { close(); return; }
    const mine = ++asked;
    list.replaceChildren(el("li", { class: "combo-note" }, "Loading…"));
    list.hidden = false;
    input.setAttribute("aria-expanded", "true");
    const answer = await ctx.suggest(element, blockId, query);
    if (mine !== asked) return;  // a later key asked again: only the newest answer is shown, as in Slack
    list.replaceChildren();
    const addOption = (option) => {
      const item = el("li", { role: "option", "data-value": option.value }, text(option.text, ctx));
      item.addEventListener("mousedown", (event) => { event.preventDefault(); choose(option); });
      list.append(item);
    };
    for (const option of answer.options ?? []) addOption(option);
    for (const group of answer.option_groups ?? []) {
      list.append(el("li", { class: "combo-group", role: "presentation" }, text(group.label, ctx)));
      for (const option of group.options ?? []) addOption(option);
    }
    if (!list.children.length) list.append(el("li", { class: "combo-note" }, "No results"));
  };
  let timer = null;
  input.addEventListener("focus", () => { input.select(); ask(); });
  input.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(ask, 120); });
  input.addEventListener("blur", () => { close(); showChosen(); });
  return box;
}

function conversationsSelect(element, block, ctx) {
  const blockId = block.block_id;
  const multi = element.type.startsWith("multi_");
  const [key, initial, empty] = STATE[element.type];
  const select = el("select", {
    id: controlId(blockId, element.action_id), "data-action-id": element.action_id, multiple: multi,
  });
  if (!multi) select.append(el("option", { value: "" }, escapeHtml(element.placeholder?.text ?? "Select a channel")));
  for (const [id, name] of Object.entries(ctx.channels ?? {})) {
    select.append(el("option", { value: id }, `#${escapeHtml(name)}`));
  }
  const current = ctx.values?.[blockId]?.[element.action_id]?.[key] ?? element[initial] ?? empty;
  for (const option of select.options) option.selected = multi ? current.includes(option.value) : option.value === current;
  select.addEventListener("change", () => {
    const picked = [...select.selectedOptions].map((o) => o.value).filter(Boolean);
    setState(ctx, blockId, element, key, multi ? picked : picked[0] ?? null);
  });
  return select;
}

function choices(element, block, ctx, kind) {
  const blockId = block.block_id;
  const group = el("div", { class: `choices ${kind}`, role: kind === "radio" ? "radiogroup" : "group",
    "data-action-id": element.action_id });
  const name = controlId(blockId, element.action_id);
  const state = ctx.values?.[blockId]?.[element.action_id];
  const selected = kind === "radio"
    ? [state?.selected_option ?? element.initial_option].filter(Boolean).map((o) => o.value)
    : (state?.selected_options ?? element.initial_options ?? []).map((o) => o.value);
  for (const option of element.options ?? []) {
    const label = el("label", { class: "choice" });
    const input = el("input", { type: kind, name, value: option.value });
    input.checked = selected.includes(option.value);
    input.addEventListener("change", () => {
      if (kind === "radio") {
        setState(ctx, blockId, element, "selected_option", option);
        if (dispatches(block, ctx)) ctx.act(element, blockId, { selected_option: option });
      } else {
        const ticked = [...group.querySelectorAll("input:checked")].map((i) => i.value);
        setState(ctx, blockId, element, "selected_options", element.options.filter((o) => ticked.includes(o.value)));
      }
    });
    const words = el("span", {}, text(option.text, ctx));
    label.append(input, words);
    if (option.description) label.append(el("small", { class: "muted" }, text(option.description, ctx)));
    group.append(label);
  }
  return group;
}

function textInput(element, block, ctx) {
  const blockId = block.block_id;
  const attrs = {
    id: controlId(blockId, element.action_id), "data-action-id": element.action_id,
    maxlength: element.max_length, minlength: element.min_length, placeholder: element.placeholder?.text,
  };
  const input = element.multiline ? el("textarea", { ...attrs, rows: 3 }) : el("input", { ...attrs, type: "text" });
  const current = ctx.values?.[blockId]?.[element.action_id]?.value ?? element.initial_value ?? "";
  input.value = current;
  input.addEventListener("input", () => setState(ctx, blockId, element, "value", input.value || null));
  return input;
}

export function renderElement(element, block, ctx) {
  if (!element || typeof element !== "object") return unsupported("element", "missing");
  switch (element.type) {
    case "button": return button(element, block.block_id, ctx);
    case "static_select": return staticSelect(element, block, ctx);
    case "external_select":
      return ctx.suggest ? externalSelect(element, block, ctx) : unsupported("element", "external_select here");
    case "conversations_select": case "multi_conversations_select":
    case "channels_select": case "multi_channels_select":
      return conversationsSelect(element, block, ctx);
    case "radio_buttons": return choices(element, block, ctx, "radio");
    case "checkboxes": return choices(element, block, ctx, "checkbox");
    case "plain_text_input": return textInput(element, block, ctx);
    default: return unsupported("element", element.type ?? "without a type");
  }
}

// ---------------------------------------------------------------- blocks

function section(block, ctx) {
  const node = el("div", { class: "block section" });
  const main = el("div", { class: "section-main" });
  if (block.text) main.append(el("div", { class: "section-text" }, text(block.text, ctx)));
  if (block.fields?.length) {
    const grid = el("div", { class: "fields" });
    for (const field of block.fields) grid.append(el("div", { class: "field" }, text(field, ctx)));
    main.append(grid);
  }
  node.append(main);
  if (block.accessory) {
    const accessory = el("div", { class: "accessory" });
    accessory.append(renderElement(block.accessory, block, ctx));
    node.append(accessory);
  }
  return node;
}

function context(block, ctx) {
  const node = el("div", { class: "block context" });
  for (const item of block.elements ?? []) {
    if (item.type === "mrkdwn" || item.type === "plain_text") node.append(el("span", {}, text(item, ctx)));
    else node.append(unsupported("context element", item.type));
  }
  return node;
}

function actions(block, ctx) {
  const node = el("div", { class: "block actions" });
  for (const element of block.elements ?? []) node.append(renderElement(element, block, ctx));
  return node;
}

function input(block, ctx) {
  const node = el("div", { class: "block input" });
  const element = block.element ?? {};
  const grouped = ["radio_buttons", "checkboxes"].includes(element.type);
  const forId = !grouped && STATE[element.type] ? controlId(block.block_id, element.action_id) : undefined;
  const label = el("label", { class: "label", for: forId }, text(block.label, ctx));
  if (block.optional) label.append(el("span", { class: "optional" }, " (optional)"));
  node.append(label);
  const control = renderElement(element, block, ctx);
  if (control.matches?.('[role="radiogroup"], [role="group"]')) control.setAttribute("aria-label", block.label?.text ?? "");
  node.append(control);
  if (block.hint) node.append(el("div", { class: "hint" }, text(block.hint, ctx)));
  const error = ctx.errors?.[block.block_id];
  if (error) node.append(el("div", { class: "error", role: "alert" }, escapeHtml(error)));
  return node;
}

export function renderBlock(block, ctx) {
  let node;
  switch (block?.type) {
    case "section": node = section(block, ctx); break;
    case "context": node = context(block, ctx); break;
    case "divider": node = el("hr", { class: "block divider" }); break;
    case "header": node = el("div", { class: "block header" }, text(block.text, ctx)); break;
    case "actions": node = actions(block, ctx); break;
    case "input": node = input(block, ctx); break;
    default: return unsupported("block", block?.type ?? "without a type");
  }
  if (block.block_id) node.dataset.blockId = block.block_id;
  return node;
}

export function renderBlocks(blocks, ctx) {
  const node = el("div", { class: "blocks" });
  for (const block of blocks ?? []) node.append(renderBlock(block, ctx));
  return node;
}
