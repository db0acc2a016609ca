// Offline schema check of a kustomize folder (docker/k8s), no cluster needed:
//   node tests/k8s/validate.mjs docker/k8s
// Reads kustomization.yaml, its resources and the ConfigMaps of its configMapGenerator, then
// checks every object twice against the Kubernetes API schema that kubernetes-models carries:
//   1. kubernetes-models' validate(): the OpenAPI schema (types, required fields, enums,
//      formats such as quantities and ports);
//   2. TypeScript's excess-property check against the same models' interfaces: an unknown or
//      misspelt field anywhere in an object ("livenesProbe") is an error. The OpenAPI schema
//      alone allows unknown fields; the API server drops them silently.
// Prints one line per object and the errors; exits 1 on any error.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import YAML from "yaml";
import ts from "typescript";

const here = path.dirname(fileURLToPath(import.meta.url));
const dir = path.resolve(process.argv[2] ?? ".");
const errors = [];

function load(file) {
  return YAML.parseAllDocuments(fs.readFileSync(path.join(dir, file), "utf8")).map((d) => {
    if (d.errors.length) errors.push(`${file}: ${d.errors.map((e) => e.message).join("; ")}`);
    return { file, obj: d.toJS() };
  });
}

const kust = load("kustomization.yaml")[0].obj;
const objects = [];
for (const file of kust.resources ?? []) objects.push(...load(file));
for (const gen of kust.configMapGenerator ?? []) {
  const data = {};
  for (const f of gen.files ?? []) data[path.basename(f)] = fs.readFileSync(path.join(dir, f), "utf8");
  objects.push({ file: "kustomization.yaml", obj: { apiVersion: "v1", kind: "ConfigMap", metadata: { name: gen.name }, data } });
}

// apiVersion "apps/v1" + kind "Deployment" -> the module kubernetes-models/apps/v1/Deployment
function modulePath({ apiVersion, kind }) {
  return `kubernetes-models/${apiVersion}/${kind}`;
}

const lines = [];
for (const [i, { file, obj }] of objects.entries()) {
  const name = `${obj.kind}/${obj.metadata?.name} (${file})`;
  let mod;
  try {
    mod = await import(modulePath(obj));
  } catch {
    errors.push(`${name}: unknown apiVersion/kind ${obj.apiVersion} ${obj.kind}`);
    continue;
  }
  try {
    new mod[obj.kind](obj).validate();
  } catch (e) {
    errors.push(`${name}: ${e.message}`);
  }
  lines.push(`import type { I${obj.kind} as T${i} } from "${modulePath(obj)}";`);
  lines.push(`export const o${i}: T${i} = ${JSON.stringify(obj, null, 2)};`);
  console.log(`checked ${name}`);
}

// The TypeScript check, on a virtual file next to node_modules.
const virtual = path.join(here, "__manifests__.ts");
const source = lines.join("\n") + "\n";
const options = { strict: true, noEmit: true, module: ts.ModuleKind.NodeNext,
                  moduleResolution: ts.ModuleResolutionKind.NodeNext, skipLibCheck: true,
                  types: [] };
const host = ts.createCompilerHost(options);
const { getSourceFile, fileExists, readFile } = host;
host.getSourceFile = (f, lang, ...rest) =>
  f === virtual ? ts.createSourceFile(f, source, lang) : getSourceFile.call(host, f, lang, ...rest);
host.fileExists = (f) => f === virtual || fileExists.call(host, f);
host.readFile = (f) => (f === virtual ? source : readFile.call(host, f));
const program = ts.createProgram([virtual], options, host);
for (const d of ts.getPreEmitDiagnostics(program)) {
  const msg = ts.flattenDiagnosticMessageText(d.messageText, "\n");
  let where = "";
  if (d.file && d.start !== undefined) {
    // name the object and the nearest keys instead of a line of the generated file
    const before = source.slice(0, d.start);
    const i = before.lastIndexOf("export const o");
    const idx = i < 0 ? -1 : Number(before.slice(i + 14).match(/^\d+/)[0]);
    where = idx >= 0 ? `${objects[idx].obj.kind}/${objects[idx].obj.metadata?.name} (${objects[idx].file}): ` : "";
  }
  errors.push(`${where}${msg}`);
}

for (const e of errors) console.error(`error: ${e}`);
console.log(errors.length ? `${errors.length} error(s)` : `${objects.length} objects valid`);
process.exit(errors.length ? 1 : 0);
