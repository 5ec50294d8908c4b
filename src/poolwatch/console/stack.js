// A task's Python stack as a list, the task's own frames set apart from library ones.

import { el } from "./format.js";

/** The last two parts of a path: enough to recognise a file, short enough for a phone. */
export function shortPath(file) {
  const parts = String(file ?? "").split(/[\\/]/).filter(Boolean);
  return parts.length > 2 ? `…/${parts.slice(-2).join("/")}` : String(file ?? "");
}

/** Fill `list` (an <ol>) with the frames of `stack` (api/tasks/{id}/stack), innermost last. */
export function renderStack(list, stack) {
  const frames = Array.isArray(stack?.frames) ? stack.frames : [];
  const key = JSON.stringify(frames);
  if (list.dataset.key === key) return;
  list.dataset.key = key;
  const items = frames.map((frame) => {
    const own = frame.library === false;
    const li = el("li", { className: own ? "frame frame-own" : "frame frame-lib" });
    li.dataset.library = own ? "false" : "true";
    const head = el("div", { className: "frame-head" });
    head.append(el("span", { className: "frame-fn mono" }, String(frame.function ?? "?")));
    head.append(
      el("span", { className: "frame-loc mono", title: String(frame.file ?? "") },
        `${shortPath(frame.file)}:${frame.line ?? "?"}`),
    );
    if (!own) head.append(el("span", { className: "sr-only" }, " (library)"));
    li.append(head);
    if (frame.source) li.append(el("code", { className: "frame-src" }, frame.source));
    return li;
  });
  if (stack?.truncated) {
    items.unshift(el("li", { className: "frame frame-more" }, "Outer frames left out (the stack is deeper)."));
  }
  list.replaceChildren(...items);
}
