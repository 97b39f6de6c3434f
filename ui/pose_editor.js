// The pose editor: COCO-18 skeletons drawn as the OpenPose map, joints dragged with the mouse.
// Runs as a gr.HTML js_on_load body: `element`, `props` (value = OpenPose JSON text; colors,
// limbs, shade, names from annotators.pose), `trigger` and `watch` come from Gradio.
// Every finished edit writes props.value and triggers 'edit', which re-renders the map in Python.
const canvas = element.querySelector("canvas.pose-canvas");
const ctx = canvas.getContext("2d");
const status = element.querySelector(".pose-status");
const COLORS = props.colors, LIMBS = props.limbs, SHADE = props.shade, NAMES = props.names;
const MIRROR_PAIRS = [[2, 5], [3, 6], [4, 7], [8, 11], [9, 12], [10, 13], [14, 15], [16, 17]];
const PICK_RADIUS = 14;  // screen pixels around a joint that grab it
let pose = null, sel = { person: 0, joint: 1 }, dragging = false, lastSent = 0;

function load() {
  try { pose = JSON.parse(props.value || "{}"); } catch (e) { pose = null; }
  if (!pose || !Array.isArray(pose.people)) pose = { canvas_width: 512, canvas_height: 512, people: [] };
  pose.people = pose.people.filter(p => Array.isArray(p.pose_keypoints_2d) && p.pose_keypoints_2d.length === 54);
  canvas.width = Math.max(1, Math.round(pose.canvas_width || 512));
  canvas.height = Math.max(1, Math.round(pose.canvas_height || 512));
  if (sel.person >= pose.people.length) sel = { person: 0, joint: 1 };
  draw();
}

function joint(person, k) {
  const a = person.pose_keypoints_2d;
  return [a[3 * k], a[3 * k + 1], a[3 * k + 2]];
}

function rgb(c, k) { return `rgb(${Math.floor(c[0] * k)},${Math.floor(c[1] * k)},${Math.floor(c[2] * k)})`; }

function draw() {
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  pose.people.forEach((person, pi) => {
    LIMBS.forEach(([a, b], li) => {
      const p = joint(person, a), q = joint(person, b);
      if (p[2] <= 0 || q[2] <= 0) return;
      ctx.strokeStyle = rgb(COLORS[li], SHADE);
      ctx.lineWidth = 8;
      ctx.lineCap = "round";
      ctx.beginPath(); ctx.moveTo(p[0], p[1]); ctx.lineTo(q[0], q[1]); ctx.stroke();
    });
    for (let k = 0; k < 18; k++) {
      const [x, y, c] = joint(person, k);
      ctx.beginPath(); ctx.arc(x, y, 4, 0, 2 * Math.PI);
      if (c > 0) { ctx.fillStyle = rgb(COLORS[k], 1); ctx.fill(); }
      else { ctx.strokeStyle = "#888"; ctx.lineWidth = 1.5; ctx.stroke(); }  // hidden: shown only here
      if (pi === sel.person && k === sel.joint) {
        ctx.beginPath(); ctx.arc(x, y, 9, 0, 2 * Math.PI);
        ctx.strokeStyle = "#fff"; ctx.lineWidth = 2; ctx.stroke();
      }
    }
  });
  const n = pose.people.length;
  status.textContent = n === 0 ? "No person: add one." :
    `${n} ${n === 1 ? "person" : "people"} · selected: person ${sel.person + 1}, ${NAMES[sel.joint]}`;
}

function send() {
  props.value = JSON.stringify(pose);
  trigger("edit");
  lastSent = Date.now();
}

function toCanvas(ev) {
  const r = canvas.getBoundingClientRect();
  return [(ev.clientX - r.left) * canvas.width / r.width, (ev.clientY - r.top) * canvas.height / r.height,
          canvas.width / r.width];
}

canvas.addEventListener("pointerdown", ev => {
  const [x, y, scale] = toCanvas(ev);
  let best = null, bestD = PICK_RADIUS * scale;
  pose.people.forEach((person, pi) => {
    for (let k = 0; k < 18; k++) {
      const [jx, jy] = joint(person, k);
      const d = Math.hypot(jx - x, jy - y);
      if (d <= bestD) { best = { person: pi, joint: k }; bestD = d; }
    }
  });
  if (!best) return;
  sel = best;
  dragging = true;
  canvas.setPointerCapture(ev.pointerId);
  ev.preventDefault();
  draw();
});

canvas.addEventListener("pointermove", ev => {
  if (!dragging) return;
  const [x, y] = toCanvas(ev);
  const a = pose.people[sel.person].pose_keypoints_2d;
  a[3 * sel.joint] = Math.round(Math.min(Math.max(x, 0), canvas.width - 1));
  a[3 * sel.joint + 1] = Math.round(Math.min(Math.max(y, 0), canvas.height - 1));
  draw();
  if (Date.now() - lastSent > 400) send();  // the map follows while dragging, a few times a second
});

canvas.addEventListener("pointerup", () => { if (dragging) { dragging = false; send(); } });

function selectedPerson() { return pose.people[sel.person]; }

const actions = {
  add() {
    const template = props.person.map(v => v);
    const shift = 40 * (pose.people.length % 5);
    for (let k = 0; k < 18; k++) {
      template[3 * k] = Math.min(canvas.width - 1, template[3 * k] * canvas.width / 512 + shift);
      template[3 * k + 1] = template[3 * k + 1] * canvas.height / 512;
    }
    pose.people.push({ pose_keypoints_2d: template });
    sel = { person: pose.people.length - 1, joint: 1 };
  },
  remove() {
    if (!pose.people.length) return;
    pose.people.splice(sel.person, 1);
    sel = { person: Math.max(0, sel.person - 1), joint: 1 };
  },
  mirror() {
    const person = selectedPerson();
    if (!person) return;
    const a = person.pose_keypoints_2d, xs = [];
    for (let k = 0; k < 18; k++) if (a[3 * k + 2] > 0) xs.push(a[3 * k]);
    const centre = xs.length ? (Math.min(...xs) + Math.max(...xs)) / 2 : canvas.width / 2;
    for (let k = 0; k < 18; k++) a[3 * k] = Math.round(2 * centre - a[3 * k]);
    // A mirrored body has its left and right swapped, and the map's colours say which is which.
    for (const [l, r] of MIRROR_PAIRS) for (let j = 0; j < 3; j++) {
      const t = a[3 * l + j]; a[3 * l + j] = a[3 * r + j]; a[3 * r + j] = t;
    }
  },
  hide() {
    const person = selectedPerson();
    if (!person) return;
    const a = person.pose_keypoints_2d, i = 3 * sel.joint + 2;
    a[i] = a[i] > 0 ? 0 : 1;
  },
  next() {
    if (pose.people.length) sel = { person: (sel.person + 1) % pose.people.length, joint: sel.joint };
  },
};

element.querySelectorAll("button[data-act]").forEach(btn => btn.addEventListener("click", () => {
  actions[btn.dataset.act]();
  draw();
  send();
}));

watch("value", load);
load();
