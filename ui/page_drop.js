() => {
  // A studio PNG dropped anywhere on the page (outside the upload areas, which take their own
  // drops) goes to the recipe drop zone, so every field and unit comes back.
  const zone = () => document.querySelector("#recipe-drop input[type=file]");
  document.addEventListener("dragover", (e) => {
    if (e.dataTransfer && Array.from(e.dataTransfer.types || []).includes("Files")) e.preventDefault();
  });
  document.addEventListener("drop", (e) => {
    if (e.defaultPrevented) return;
    const file = e.dataTransfer && e.dataTransfer.files && e.dataTransfer.files[0];
    const input = zone();
    if (!file || !input || !/\.png$/i.test(file.name)) return;
    e.preventDefault();
    const dt = new DataTransfer();
    dt.items.add(file);
    input.files = dt.files;
    input.dispatchEvent(new Event("change", { bubbles: true }));
  });
}
