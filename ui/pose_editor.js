// The pose editor: COCO-18 skeletons drawn as the OpenPose map, joints dragged with the mouse.
// Runs as a gr.HTML js_on_load body: `element`, `props` (value = OpenPose JSON text; colors,
// limbs, shade, names from annotators.pose), `trigger` and `watch` come from Gradio.
// Every finished edit writes props.value and triggers 'edit', which re-renders the map in Python.
// Hands and faces (OpenPose's hand_*_keypoints_2d, face_keypoints_2d) are drawn and kept: moving a
// wrist moves its hand, mirroring a person mirrors them too; only body joints are dragged.
const canvas = element.querySelector("canvas.pose-canvas");
const ctx = canvas.getContext("2d");
const status = element.querySelector(".pose-status");
const COLORS = props.colors, LIMBS = props.limbs, SHADE = props.shade, NAMES = props.names;
const MIRROR_PAIRS = [[2, 5], [3, 6], [4, 7], [8, 11], [9, 12], [10, 13], [14, 15], [16, 17]];
const HAND_EDGES = props.hand_edges;
const HAND_OF_WRIST = { 4: "hand_right_keypoints_2d", 7: "hand_left_keypoints_2d" };  // COCO-18 wrists
const PARTS = ["hand_left_keypoints_2d", "hand_right_keypoints_2d", "face_keypoints_2d"];
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

function hsv(h) {  // colorsys.hsv_to_rgb(h, 1, 1), as the map's hand bones are coloured
  const i = Math.floor(h * 6), f = h * 6 - i, q = 1 - f;
  const [r, g, b] = [[1, f, 0], [q, 1, 0], [0, 1, f], [0, q, 1], [f, 0, 1], [1, 0, q]][i % 6];
  return `rgb(${Math.floor(r * 255)},${Math.floor(g * 255)},${Math.floor(b * 255)})`;
}

function drawParts(person) {
  for (const key of ["hand_left_keypoints_2d", "hand_right_keypoints_2d"]) {
    const a = person[key];
    if (!Array.isArray(a) || a.length !== 63) continue;
    HAND_EDGES.forEach(([i, j], k) => {
      if (a[3 * i + 2] <= 0 || a[3 * j + 2] <= 0) return;
      ctx.strokeStyle = hsv(k / HAND_EDGES.length); ctx.lineWidth = 2;
      ctx.beginPath(); ctx.moveTo(a[3 * i], a[3 * i + 1]); ctx.lineTo(a[3 * j], a[3 * j + 1]); ctx.stroke();
    });
    ctx.fillStyle = "rgb(0,0,255)";
    for (let k = 0; k < 21; k++) if (a[3 * k + 2] > 0) {
      ctx.beginPath(); ctx.arc(a[3 * k], a[3 * k + 1], 3, 0, 2 * Math.PI); ctx.fill();
    }
  }
  const f = person.face_keypoints_2d;
  if (Array.isArray(f) && f.length === 210) {
    ctx.fillStyle = "#fff";
    for (let k = 0; k < 70; k++) if (f[3 * k + 2] > 0) {
      ctx.beginPath(); ctx.arc(f[3 * k], f[3 * k + 1], 2, 0, 2 * Math.PI); ctx.fill();
    }
  }
}

function shift(a, dx, dy) {
  if (!Array.isArray(a)) return;
  for (let k = 0; 3 * k + 2 < a.length; k++) if (a[3 * k + 2] > 0) { a[3 * k] += dx; a[3 * k + 1] += dy; }
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
    drawParts(person);
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
  const person = pose.people[sel.person], a = person.pose_keypoints_2d;
  const nx = Math.round(Math.min(Math.max(x, 0), canvas.width - 1));
  const ny = Math.round(Math.min(Math.max(y, 0), canvas.height - 1));
  // a hand travels with its wrist; the face with the nose
  const carried = sel.joint === 0 ? "face_keypoints_2d" : HAND_OF_WRIST[sel.joint];
  if (carried) shift(person[carried], nx - a[3 * sel.joint], ny - a[3 * sel.joint + 1]);
  a[3 * sel.joint] = nx;
  a[3 * sel.joint + 1] = ny;
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
    for (const key of PARTS) {
      const p = person[key];
      if (Array.isArray(p)) for (let k = 0; 3 * k < p.length; k++) p[3 * k] = Math.round(2 * centre - p[3 * k]);
    }
    // the left hand becomes the right one; a face's own left and right are left to its points
    [person.hand_left_keypoints_2d, person.hand_right_keypoints_2d] =
      [person.hand_right_keypoints_2d, person.hand_left_keypoints_2d];
    for (const key of ["hand_left_keypoints_2d", "hand_right_keypoints_2d"]) if (person[key] === undefined) delete person[key];
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
