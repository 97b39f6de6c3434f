() => {
  // Gradio's sliders clamp a typed number to their range without a word (99999 -> 2048 px,
  // 999 -> 150 steps): the note under the settings says what was changed and why.
  const say = (text) => { const n = document.querySelector("#limit-note"); if (n) n.textContent = text; };
  const check = (e) => {
    const input = e.target;
    if (!(input instanceof HTMLInputElement) || input.type !== "number") return;
    const block = input.closest("#width, #height, #steps");
    if (!block || input.value === "") return;
    const typed = Number(input.value), lo = Number(input.min), hi = Number(input.max);
    if (!Number.isFinite(typed)) return;
    const name = block.id === "steps" ? "Steps" : block.id === "width" ? "Width" : "Height";
    const unit = block.id === "steps" ? "" : " px";
    if (input.max !== "" && typed > hi)
      say(`${name} ${typed} is more than ${hi}${unit}, the most a request may ask for (engine/limits.py): set to ${hi}.`);
    else if (input.min !== "" && typed < lo)
      say(`${name} ${typed} is less than ${lo}${unit}, the least allowed: set to ${lo}.`);
  };
  document.addEventListener("change", check, true);
  document.addEventListener("keydown", (e) => { if (e.key === "Enter") check(e); }, true);
}
