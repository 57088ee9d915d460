// scenescape viewer: a run's GLB (mesh with linear COLOR_0 + glTF camera nodes) shown with three.js,
// the camera path as frustums, the frames on a slider, and a play button that flies the path.
// Input: window.SCENESCAPE_VIEW = {title, glb: base64 string, frames: [data URI, ...], fps}.
// Output for tests: #status carries data-* attributes (loaded, vertices, faces, cameras, frames, drawn).
import * as THREE from "three";
import { GLTFLoader } from "three/examples/jsm/loaders/GLTFLoader.js";
import { OrbitControls } from "three/examples/jsm/controls/OrbitControls.js";

const BACKGROUND = 0x202024;

function base64ToBuffer(b64) {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out.buffer;
}

function el(tag, attrs = {}, parent = null) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") e.textContent = v;
    else if (k === "style") e.style.cssText = v;
    else e.setAttribute(k, v);
  }
  if (parent) parent.appendChild(e);
  return e;
}

function frustumLines(cam, depth, color) {
  // A pyramid in the camera's local axes (glTF/OpenGL: looks along -Z, +Y up), apex at the centre.
  const h = depth * Math.tan(THREE.MathUtils.degToRad(cam.fov) / 2);
  const w = h * cam.aspect;
  const c = [[-w, -h], [w, -h], [w, h], [-w, h]].map(([x, y]) => new THREE.Vector3(x, y, -depth));
  const o = new THREE.Vector3(0, 0, 0);
  const up = new THREE.Vector3(0, h * 1.35, -depth);
  const pts = [o, c[0], o, c[1], o, c[2], o, c[3], c[0], c[1], c[1], c[2], c[2], c[3], c[3], c[0], c[3], up, up, c[2]];
  const g = new THREE.BufferGeometry().setFromPoints(pts);
  return new THREE.LineSegments(g, new THREE.LineBasicMaterial({ color, depthTest: true }));
}

function main() {
  const data = window.SCENESCAPE_VIEW;
  const status = el("div", { id: "status", "data-loaded": "0",
    style: "position:fixed;left:8px;top:8px;color:#ddd;font:12px monospace;z-index:2;pointer-events:none" }, document.body);
  status.textContent = "loading...";
  if (!data || !data.glb) {
    status.textContent = "error: no scene data";
    status.setAttribute("data-error", "no scene data");
    return;
  }
  const renderer = new THREE.WebGLRenderer({ antialias: true, preserveDrawingBuffer: true });
  renderer.outputColorSpace = THREE.SRGBColorSpace; // COLOR_0 is linear; the canvas shows sRGB
  renderer.setPixelRatio(1);
  renderer.setSize(window.innerWidth, window.innerHeight);
  renderer.setClearColor(BACKGROUND, 1);
  document.body.appendChild(renderer.domElement);
  const scene = new THREE.Scene();
  const view = new THREE.PerspectiveCamera(50, window.innerWidth / window.innerHeight, 0.001, 1000);
  const controls = new OrbitControls(view, renderer.domElement);

  // --- UI
  const bar = el("div", { id: "controls",
    style: "position:fixed;left:0;right:0;bottom:0;padding:8px;background:rgba(0,0,0,.55);color:#eee;" +
      "font:13px sans-serif;display:flex;gap:10px;align-items:center;z-index:2" }, document.body);
  const play = el("button", { id: "play", text: "Play" }, bar);
  const slider = el("input", { id: "frame", type: "range", min: "0", max: "0", value: "0", step: "1",
    style: "flex:1" }, bar);
  const label = el("span", { id: "frame-label", text: "frame 0" }, bar);
  const free = el("button", { id: "free", text: "Overview" }, bar);
  const showFrustums = el("label", { text: " frustums" }, bar);
  const frustumBox = el("input", { type: "checkbox", checked: "checked" });
  showFrustums.prepend(frustumBox);
  const thumb = el("img", { id: "frame-image", alt: "frame",
    style: "position:fixed;right:8px;top:8px;max-width:28vw;max-height:32vh;border:1px solid #888;z-index:2" },
    document.body);
  el("div", { text: data.title || "scenescape",
    style: "position:fixed;left:8px;top:26px;color:#aaa;font:12px sans-serif;z-index:2" }, document.body);

  let cams = [];
  let orbitDepth = 1;
  let frustums = null;
  let t = 0; // path parameter: camera index (fractional while flying)
  let playing = false;
  let last = null;

  function setFrameImage(i) {
    if (data.frames && data.frames.length) thumb.src = data.frames[Math.min(i, data.frames.length - 1)];
  }

  function applyPath(tt) {
    if (!cams.length) return;
    const i = Math.min(Math.floor(tt), cams.length - 1);
    const j = Math.min(i + 1, cams.length - 1);
    const a = tt - i;
    const pa = new THREE.Vector3(), pb = new THREE.Vector3();
    const qa = new THREE.Quaternion(), qb = new THREE.Quaternion();
    cams[i].getWorldPosition(pa); cams[j].getWorldPosition(pb);
    cams[i].getWorldQuaternion(qa); cams[j].getWorldQuaternion(qb);
    view.position.copy(pa.lerp(pb, a));
    view.quaternion.copy(qa.slerp(qb, a));
    view.fov = cams[i].fov;
    view.updateProjectionMatrix();
    // keep the orbit target in front of the path camera so "free view" continues from here
    const fwd = new THREE.Vector3(0, 0, -1).applyQuaternion(view.quaternion);
    controls.target.copy(view.position).addScaledVector(fwd, orbitDepth);
    const k = Math.round(tt);
    slider.value = String(k);
    label.textContent = `frame ${k} / ${cams.length - 1}`;
    setFrameImage(k);
    frustums.children.forEach((f, n) => { f.material.color.set(n === k ? 0xffcc00 : 0x44aaff); });
  }

  function overview() {
    // free view from behind and above the end of the path, looking at the middle of the scene
    const box = new THREE.Box3().setFromObject(scene.children[0]);
    const diag = box.getSize(new THREE.Vector3()).length() || 1;
    const centre = box.getCenter(new THREE.Vector3());
    const from = new THREE.Vector3();
    if (cams.length) {
      cams[cams.length - 1].getWorldPosition(from);
      const back = new THREE.Vector3(0, 0, 1).applyQuaternion(cams[cams.length - 1].getWorldQuaternion(new THREE.Quaternion()));
      from.addScaledVector(back, 0.35 * diag).add(new THREE.Vector3(0, 0.25 * diag, 0));
    } else {
      from.copy(centre).add(new THREE.Vector3(0, 0.3 * diag, 1.2 * diag));
    }
    view.position.copy(from);
    controls.target.copy(centre);
    view.fov = 50;
    view.updateProjectionMatrix();
    controls.update();
  }

  play.addEventListener("click", () => {
    playing = !playing;
    play.textContent = playing ? "Pause" : "Play";
    if (playing && t >= cams.length - 1) t = 0;
    last = null;
  });
  slider.addEventListener("input", () => { playing = false; play.textContent = "Play"; t = Number(slider.value); applyPath(t); });
  free.addEventListener("click", () => { playing = false; play.textContent = "Play"; overview(); });
  frustumBox.addEventListener("change", () => { if (frustums) frustums.visible = frustumBox.checked; });
  window.addEventListener("resize", () => {
    renderer.setSize(window.innerWidth, window.innerHeight);
    view.aspect = window.innerWidth / window.innerHeight;
    view.updateProjectionMatrix();
  });

  const loader = new GLTFLoader();
  loader.parse(base64ToBuffer(data.glb), "", (gltf) => {
    scene.add(gltf.scene);
    gltf.scene.updateMatrixWorld(true);
    let vertices = 0, faces = 0, colored = 0;
    gltf.scene.traverse((o) => {
      if (o.isMesh) {
        vertices += o.geometry.attributes.position.count;
        faces += o.geometry.index ? o.geometry.index.count / 3 : o.geometry.attributes.position.count / 3;
        if (o.geometry.attributes.color && o.material.vertexColors) colored += 1;
      }
    });
    cams = gltf.cameras.filter((c) => c.isPerspectiveCamera);
    cams.sort((a, b) => ((a.userData.frame ?? 0) - (b.userData.frame ?? 0)));
    const box = new THREE.Box3().setFromObject(gltf.scene);
    const diag = box.getSize(new THREE.Vector3()).length() || 1;
    orbitDepth = 0.25 * diag;
    view.near = diag * 1e-4; view.far = diag * 100; view.updateProjectionMatrix();
    frustums = new THREE.Group();
    const pathPts = [];
    for (const c of cams) {
      const f = frustumLines(c, 0.02 * diag, 0x44aaff);
      c.updateMatrixWorld(true);
      f.matrixAutoUpdate = false;
      f.matrix.copy(c.matrixWorld);
      frustums.add(f);
      pathPts.push(c.getWorldPosition(new THREE.Vector3()));
    }
    if (pathPts.length > 1) {
      frustums.add(new THREE.Line(new THREE.BufferGeometry().setFromPoints(pathPts),
        new THREE.LineBasicMaterial({ color: 0xff5533 })));
    }
    scene.add(frustums);
    slider.max = String(Math.max(cams.length - 1, 0));
    if (cams.length) applyPath(0);
    else {
      box.getCenter(controls.target);
      view.position.copy(controls.target).add(new THREE.Vector3(0, 0.3 * diag, 1.2 * diag));
      controls.update();
    }
    frustums.visible = false;
    renderer.render(scene, view);
    frustums.visible = frustumBox.checked;
    // fraction of the canvas the mesh covers from the first camera, frustums hidden (the test reads it)
    const gl = renderer.getContext();
    const w = gl.drawingBufferWidth, h = gl.drawingBufferHeight;
    const px = new Uint8Array(w * h * 4);
    gl.readPixels(0, 0, w, h, gl.RGBA, gl.UNSIGNED_BYTE, px);
    const bg = new THREE.Color(BACKGROUND);
    const bgs = [bg.r, bg.g, bg.b].map((x) => Math.round(x * 255));
    let drawn = 0;
    for (let p = 0; p < w * h; p++) {
      const d = Math.abs(px[4 * p] - bgs[0]) + Math.abs(px[4 * p + 1] - bgs[1]) + Math.abs(px[4 * p + 2] - bgs[2]);
      if (d > 6) drawn++;
    }
    const attrs = { "data-loaded": "1", "data-vertices": vertices, "data-faces": faces, "data-colored-meshes": colored,
      "data-cameras": cams.length, "data-frames": (data.frames || []).length, "data-drawn": (drawn / (w * h)).toFixed(4) };
    for (const [k, v] of Object.entries(attrs)) status.setAttribute(k, String(v));
    status.textContent = `mesh: ${vertices} vertices, ${faces} faces; ${cams.length} cameras; ${(data.frames || []).length} frames`;
    document.title = `scenescape view: loaded ${cams.length} cameras`;
    overview();
    renderer.setAnimationLoop((now) => {
      if (playing && cams.length > 1) {
        if (last !== null) t = Math.min(t + ((now - last) / 1000) * (data.fps || 10), cams.length - 1);
        last = now;
        applyPath(t);
        if (t >= cams.length - 1) { playing = false; play.textContent = "Play"; }
      } else {
        controls.update();
      }
      renderer.render(scene, view);
    });
  }, (err) => {
    status.textContent = `error: ${err && err.message ? err.message : err}`;
    status.setAttribute("data-error", String(err && err.message ? err.message : err));
  });
}

main();
