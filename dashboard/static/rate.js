/* The raters' page: keys 1–5 answer (a triplet's rows in turn, sent when all three are set). Loaded by
   rater_base.html only; no inline scripts (CSP). Keys count only once every picture has loaded. */
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("rate-form");
  if (!form) return;
  const images = [...form.querySelectorAll(".stimulus img")];
  let sent = false;
  form.addEventListener("submit", () => { sent = true; });

  document.addEventListener("keydown", (e) => {
    if (sent || e.ctrlKey || e.metaKey || e.altKey || e.repeat || !/^[1-5]$/.test(e.key)) return;
    if (!images.every((img) => img.complete && img.naturalWidth)) return;
    e.preventDefault();
    if (form.dataset.kind === "acr") {
      const button = form.querySelector('button[value="' + e.key + '"]');
      button.classList.add("pressed");
      form.requestSubmit(button);
      return;
    }
    const rows = [...form.querySelectorAll("fieldset.criterion")];
    const row = rows.find((r) => !r.querySelector("input:checked"));
    if (row) row.querySelector('input[value="' + e.key + '"]').checked = true;
    if (rows.every((r) => r.querySelector("input:checked"))) form.requestSubmit();
  });
});
