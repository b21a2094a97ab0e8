// Renders report Markdown files as a pull request comment shows them: GFM
// through marked, each ```mermaid block through Mermaid 11, in headless
// Chromium (Debian's), with a full-page screenshot of each.
//
//	node render.mjs --chromium /usr/bin/chromium --out DIR FILE.md...
//
// It prints one JSON object: {"reports": [{file, png, blocks: [{kind,
// error, strokes}]}]}. A block whose text Mermaid cannot parse has its
// error; a chart lists the stroke colour of each of its lines, as drawn.
import { readFile, writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { fileURLToPath } from "node:url";
import { marked } from "marked";
import puppeteer from "puppeteer-core";

const args = process.argv.slice(2);
let chromium = "/usr/bin/chromium";
let out = ".";
const files = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--chromium") chromium = args[++i];
  else if (args[i] === "--out") out = args[++i];
  else files.push(args[i]);
}

const here = fileURLToPath(new URL(".", import.meta.url));
const mermaidJS = join(here, "node_modules", "mermaid", "dist", "mermaid.min.js");

// Close to GitHub's comment styles: enough to read a screenshot.
const css = `
body { font: 14px/1.5 -apple-system, "Segoe UI", "Noto Sans", Helvetica, Arial, sans-serif, "Noto Color Emoji";
       color: #1f2328; max-width: 860px; margin: 16px auto; padding: 0 16px; }
h2 { border-bottom: 1px solid #d1d9e0; padding-bottom: .3em; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { border: 1px solid #d1d9e0; padding: 4px 10px; }
tr:nth-child(2n) { background: #f6f8fa; }
code { background: #eff1f3; border-radius: 4px; padding: .1em .3em; font-size: 85%; }
pre { background: #f6f8fa; padding: 12px; overflow: auto; }
pre.mermaid { background: none; }
blockquote { border-left: 4px solid #0969da; margin: 0; padding: 0 12px; color: #59636e; }
`;

function page(html) {
  // marked leaves ```mermaid blocks as <pre><code class="language-mermaid">;
  // GitHub hands their text to Mermaid.
  html = html.replace(/<pre><code class="language-mermaid">([\s\S]*?)<\/code><\/pre>/g, '<pre class="mermaid">$1</pre>');
  return `<!doctype html><html><head><meta charset="utf-8"><style>${css}</style></head><body>${html}</body></html>`;
}

const browser = await puppeteer.launch({
  executablePath: chromium,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--allow-file-access-from-files"],
});
const reports = [];
try {
  for (const file of files) {
    const md = await readFile(file, "utf8");
    const html = page(marked.parse(md, { gfm: true }));
    const tab = await browser.newPage();
    await tab.setViewport({ width: 940, height: 800, deviceScaleFactor: 1 });
    await tab.setContent(html, { waitUntil: "load" });
    await tab.addScriptTag({ path: mermaidJS });
    const blocks = await tab.evaluate(async () => {
      const mermaid = globalThis.mermaid;
      mermaid.initialize({ startOnLoad: false, securityLevel: "strict", theme: "default" });
      const found = [];
      for (const el of document.querySelectorAll("pre.mermaid")) {
        const text = el.textContent;
        const b = { kind: text.includes("xychart-beta") ? "xychart" : text.trim().split(/\s/)[0], error: "", strokes: [] };
        try {
          await mermaid.parse(text);
        } catch (e) {
          b.error = String(e && e.message ? e.message : e);
        }
        found.push({ el, b });
      }
      const ok = found.filter((f) => !f.b.error).map((f) => f.el);
      if (ok.length > 0) {
        try {
          await mermaid.run({ nodes: ok });
        } catch (e) {
          for (const f of found) if (!f.b.error) f.b.error = "render: " + String(e && e.message ? e.message : e);
        }
      }
      for (const { el, b } of found) {
        if (b.kind !== "xychart" || b.error) continue;
        const svg = el.querySelector("svg");
        if (!svg) {
          b.error = "no SVG was drawn";
          continue;
        }
        for (const g of svg.querySelectorAll('g[class^="line-plot-"]')) {
          const path = g.querySelector("path");
          if (path) b.strokes.push(path.getAttribute("stroke") || getComputedStyle(path).stroke);
        }
      }
      return found.map((f) => f.b);
    });
    const png = join(out, basename(file).replace(/\.md$/, "") + ".png");
    await writeFile(png, await tab.screenshot({ fullPage: true, type: "png" }));
    reports.push({ file, png, blocks });
    await tab.close();
  }
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify({ reports }) + "\n");
