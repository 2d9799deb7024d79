// The explorer's generator, run in the page off the main thread: ONNX Runtime Web (WebAssembly) on a version's
// generator.onnx, its output quantised exactly as the service quantises it (shared.imaging.grids.to_uint8), so the
// pictures drawn here are the service's within a grey level or two (float sums in another order).
//
// Messages in: {id, type: "init", base, threads} | {id, type: "load", key, bytes} | {id, type: "unload", key} |
//              {id, type: "run", key, latents (Float32Array, count x width), count, style, classes, shape}.
// Each is answered {id, ok: true, ...} or {id, ok: false, error}; "run" answers {pixels}: RGBA, count images.

let ort = null;
const sessions = new Map();  // "model/version" -> InferenceSession

const handlers = {
  async init({ base, threads }) {
    ort = await import(`${base}ort.wasm.min.mjs`);
    ort.env.wasm.wasmPaths = base;
    ort.env.wasm.numThreads = threads;
    return {};
  },

  async load({ key, bytes }) {
    if (!sessions.has(key)) {
      sessions.set(key, await ort.InferenceSession.create(new Uint8Array(bytes), {
        executionProviders: ["wasm"], graphOptimizationLevel: "all" }));
    }
    return {};
  },

  async unload({ key }) {
    await sessions.get(key)?.release();
    sessions.delete(key);
    return {};
  },

  async run({ key, latents, count, style, classes, shape }) {
    const session = sessions.get(key);
    if (!session) throw new Error(`${key}'s generator is not loaded`);
    const width = style + classes;
    const feeds = {};
    if (classes) {  // a conditional generator's ONNX form takes z and the class weights as two inputs
      const z = new Float32Array(count * style), weights = new Float32Array(count * classes);
      for (let n = 0; n < count; n++) {
        z.set(latents.subarray(n * width, n * width + style), n * style);
        weights.set(latents.subarray(n * width + style, (n + 1) * width), n * classes);
      }
      feeds.latents = new ort.Tensor("float32", z, [count, style]);
      feeds.class = new ort.Tensor("float32", weights, [count, classes]);
    } else {
      feeds.latents = new ort.Tensor("float32", latents, [count, width]);
    }
    const { images } = await session.run(feeds);
    const pixels = rgba(images.data, count, shape);
    images.dispose?.();
    return { pixels, transfer: [pixels.buffer] };
  },
};

// torch's to_uint8 in float32 arithmetic: (x + 1) * 127.5, rounded half to even, clamped to 0..255
function level(x) {
  const v = Math.fround(Math.fround(x + 1) * 127.5);
  let r = Math.round(v);
  if (r - v === 0.5 && r % 2 !== 0) r -= 1;  // Math.round takes halves up; torch.round takes them to even
  return r < 0 ? 0 : r > 255 ? 255 : r;
}

// (count, C, H, W) floats -> RGBA bytes, image after image (grey: the level in R, G and B)
function rgba(data, count, [channels, height, width]) {
  const plane = height * width;
  const out = new Uint8ClampedArray(count * plane * 4);
  for (let n = 0; n < count; n++) {
    const src = n * channels * plane, dst = n * plane * 4;
    for (let p = 0; p < plane; p++) {
      const o = dst + 4 * p;
      if (channels === 1) {
        out[o] = out[o + 1] = out[o + 2] = level(data[src + p]);
      } else {
        out[o] = level(data[src + p]);
        out[o + 1] = level(data[src + plane + p]);
        out[o + 2] = level(data[src + 2 * plane + p]);
      }
      out[o + 3] = 255;
    }
  }
  return out;
}

self.onmessage = async ({ data }) => {
  try {
    const { transfer = [], ...answer } = await handlers[data.type](data);
    self.postMessage({ id: data.id, ok: true, ...answer }, transfer);
  } catch (e) {
    self.postMessage({ id: data.id, ok: false, error: String(e?.message ?? e) });
  }
};
