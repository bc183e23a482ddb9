// The sharp half of compare.sh: the same transform as examples/image_bench.rs, at the same
// concurrency (each operation on one libvips thread), printing the same JSON.
//
//   node sharp-bench.mjs INPUT WIDTH FORMAT QUALITY CONCURRENCY SECONDS
import { readFileSync } from "node:fs";
import sharp from "sharp";

const [input, width, format, quality, concurrency, seconds] = process.argv.slice(2);
const source = readFileSync(input);
sharp.concurrency(1);
sharp.cache(false);

const run = () => {
  let pipeline = sharp(source).rotate().resize({ width: Number(width), fit: "inside" });
  const q = Number(quality);
  if (format === "jpeg") pipeline = pipeline.jpeg({ quality: q });
  else if (format === "webp") pipeline = pipeline.webp({ quality: q });
  else pipeline = pipeline.png();
  return pipeline.toBuffer({ resolveWithObject: true });
};

const first = await run();
const until = Date.now() + Number(seconds) * 1000;
let done = 0;
const started = process.hrtime.bigint();
const worker = async () => {
  while (Date.now() < until) {
    await run();
    done += 1;
  }
};
await Promise.all(Array.from({ length: Number(concurrency) }, worker));
const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
console.log(JSON.stringify({
  ops_per_s: Number((done / elapsed).toFixed(2)),
  bytes: first.data.length,
  width: first.info.width,
  height: first.info.height,
}));
