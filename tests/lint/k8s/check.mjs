// scripts/check-k8s: renders deploy/k8s (the base, and each overlay) the way
// kustomize does for the fields the manifests use, validates every object
// against the Kubernetes and KEDA schemas of kubernetes-models (plus unknown
// fields, which those schemas let through), and checks the manifests against
// freshet itself: image name (docker-compose.yml), env names (the C sources),
// probe ports (FRESHET_API_ADDR / FRESHET_ADMIN_ADDR), key names
// (common/names.c and names.h), pipelines and datasets, references between
// objects. No Kubernetes cluster and no network.
//   node check.mjs SRC_DIR              check; exit 1 on any error
//   node check.mjs SRC_DIR --self-test  also break the rendered example on
//                                       purpose and require each break found
//   node check.mjs SRC_DIR --render DIR print DIR rendered (YAML)
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import YAML from "yaml";

const here = path.dirname(fileURLToPath(import.meta.url));
const src = path.resolve(process.argv[2] || path.join(here, "../../.."));
const mode = process.argv[3] || "";

class CheckError extends Error {}
const fail = (msg) => {
  throw new CheckError(msg);
};

// ---------------------------------------------------------------- rendering

const SUPPORTED = new Set([
  "apiVersion", "kind", "resources", "namespace", "images",
  "configMapGenerator", "secretGenerator", "patches",
]);
const CLUSTER_SCOPED = new Set(["Namespace", "PersistentVolume", "StorageClass", "ClusterRole",
  "ClusterRoleBinding", "CustomResourceDefinition", "ClusterTriggerAuthentication"]);

function readYamlDocs(file) {
  // YAML 1.1, as kubectl reads it: an unquoted on/off/yes/no is a boolean.
  const docs = YAML.parseAllDocuments(fs.readFileSync(file, "utf8"), { version: "1.1" });
  const out = [];
  for (const d of docs) {
    if (d.errors.length) fail(`${file}: ${d.errors[0].message}`);
    const v = d.toJS();
    if (v !== null && v !== undefined) out.push(v);
  }
  return out;
}

// kustomize's load restrictor: a kustomization reads only files at or below
// its own directory (other kustomizations are reached as resources).
function inside(root, rel, what) {
  const p = path.resolve(root, rel);
  if (p !== root && !p.startsWith(root + path.sep))
    fail(`${what}: ${rel} is outside ${path.relative(src, root)} (kustomize refuses files outside the kustomization's directory)`);
  if (!fs.existsSync(p)) fail(`${what}: ${rel} does not exist`);
  return p;
}

function parseEnvFile(file) {
  const out = {};
  for (const line of fs.readFileSync(file, "utf8").split("\n")) {
    const t = line.trim();
    if (!t || t.startsWith("#")) continue;
    const i = t.indexOf("=");
    if (i <= 0) fail(`${file}: "${t}" is not KEY=VALUE`);
    out[t.slice(0, i)] = t.slice(i + 1);
  }
  return out;
}

function generate(dir, g, kind, what) {
  if (!g.name) fail(`${what}: a generator without a name`);
  for (const k of Object.keys(g))
    if (!["name", "behavior", "literals", "files", "envs", "options", "type"].includes(k))
      fail(`${what}: generator ${g.name}: field ${k} is not handled by scripts/check-k8s`);
  const data = {};
  const put = (k, v, from) => {
    if (k in data) fail(`${what}: generator ${g.name}: key ${k} twice (${from})`);
    if (!/^[-._a-zA-Z0-9]+$/.test(k)) fail(`${what}: generator ${g.name}: key "${k}" is not a valid ConfigMap/Secret key`);
    data[k] = v;
  };
  for (const l of g.literals || []) {
    const i = l.indexOf("=");
    if (i <= 0) fail(`${what}: literal "${l}" is not KEY=VALUE`);
    let v = l.slice(i + 1);
    if (/^".*"$|^'.*'$/.test(v)) v = v.slice(1, -1);
    put(l.slice(0, i), v, "literals");
  }
  for (const f of g.files || []) {
    const i = f.indexOf("=");
    const key = i > 0 ? f.slice(0, i) : path.basename(f);
    const rel = i > 0 ? f.slice(i + 1) : f;
    put(key, fs.readFileSync(inside(dir, rel, what), "utf8"), rel);
  }
  for (const e of g.envs || [])
    for (const [k, v] of Object.entries(parseEnvFile(inside(dir, e, what)))) put(k, v, e);
  const obj = { apiVersion: "v1", kind, metadata: { name: g.name } };
  if (kind === "Secret") {
    obj.type = g.type || "Opaque";
    obj.data = Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v).toString("base64")]));
  } else {
    obj.data = data;
  }
  const hash = !(g.options && g.options.disableNameSuffixHash);
  return { obj, behavior: g.behavior || "create", hash };
}

// Strategic merge, with the merge keys of the Kubernetes lists these
// manifests patch; any other list is replaced, as the API does.
const MERGE_KEYS = {
  containers: "name", initContainers: "name", volumes: "name", env: "name",
  volumeMounts: "mountPath", ports: "containerPort", imagePullSecrets: "name",
};
function smp(target, patch, where) {
  for (const [k, v] of Object.entries(patch)) {
    if (k.startsWith("$")) fail(`${where}: directive ${k} is not handled by scripts/check-k8s`);
    if (v === null) {
      delete target[k];
    } else if (Array.isArray(v) && MERGE_KEYS[k] && Array.isArray(target[k])) {
      // Items new to the list go first, in the patch's order, as kustomize
      // places them.
      const key = MERGE_KEYS[k];
      const added = [];
      for (const item of v) {
        const cur = target[k].find((x) => x[key] === item[key]);
        if (cur) smp(cur, item, where);
        else added.push(structuredClone(item));
      }
      target[k] = [...added, ...target[k]];
    } else if (v && typeof v === "object" && !Array.isArray(v) && target[k] && typeof target[k] === "object" && !Array.isArray(target[k])) {
      smp(target[k], v, where);
    } else {
      target[k] = structuredClone(v);
    }
  }
}

function podSpecs(o) {
  const s = o.spec || {};
  if (["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"].includes(o.kind)) return s.template ? [s.template.spec || {}] : [];
  if (o.kind === "CronJob") return [s.jobTemplate?.spec?.template?.spec || {}];
  if (o.kind === "Pod") return [s];
  return [];
}
const containersOf = (ps) => [...(ps.initContainers || []), ...(ps.containers || [])];

function splitImage(img) {
  let digest = "";
  let name = img;
  const at = name.indexOf("@");
  if (at >= 0) [name, digest] = [name.slice(0, at), name.slice(at)];
  let tag = "";
  const colon = name.lastIndexOf(":");
  if (colon > name.lastIndexOf("/")) [name, tag] = [name.slice(0, colon), name.slice(colon + 1)];
  return { name, tag, digest };
}

// One kustomization: { items: [{obj, hash, file}] } with generated names
// still unsuffixed (the suffix and the references to it come last, at the top).
function build(dir) {
  dir = path.resolve(dir);
  const kfile = path.join(dir, "kustomization.yaml");
  const rel = path.relative(src, kfile);
  if (!fs.existsSync(kfile)) fail(`${path.relative(src, dir)}: no kustomization.yaml`);
  const k = readYamlDocs(kfile)[0] || {};
  for (const f of Object.keys(k)) if (!SUPPORTED.has(f)) fail(`${rel}: field ${f} is not handled by scripts/check-k8s (it renders ${[...SUPPORTED].join(", ")})`);
  if (k.kind !== "Kustomization" || k.apiVersion !== "kustomize.config.k8s.io/v1beta1")
    fail(`${rel}: apiVersion/kind must be kustomize.config.k8s.io/v1beta1 Kustomization`);
  let items = [];
  for (const r of k.resources || []) {
    const p = path.resolve(dir, r);
    if (!fs.existsSync(p)) fail(`${rel}: resource ${r} does not exist`);
    if (fs.statSync(p).isDirectory()) items.push(...build(p).items);
    else {
      inside(dir, r, rel);
      for (const obj of readYamlDocs(p)) items.push({ obj, hash: false, file: path.relative(src, p) });
    }
  }
  for (const [list, kind] of [[k.configMapGenerator, "ConfigMap"], [k.secretGenerator, "Secret"]]) {
    for (const g of list || []) {
      const { obj, behavior, hash } = generate(dir, g, kind, rel);
      const cur = items.find((it) => it.obj.kind === kind && it.obj.metadata.name === obj.metadata.name);
      if (behavior === "create") {
        if (cur) fail(`${rel}: ${kind} ${obj.metadata.name} exists already (behavior: merge or replace)`);
        items.push({ obj, hash, file: rel });
      } else if (behavior === "merge" || behavior === "replace") {
        if (!cur) fail(`${rel}: ${kind} ${obj.metadata.name} (behavior ${behavior}) has nothing to ${behavior}`);
        cur.obj.data = behavior === "merge" ? { ...cur.obj.data, ...obj.data } : obj.data;
      } else fail(`${rel}: generator ${obj.metadata.name}: behavior ${behavior}`);
    }
  }
  for (const p of k.patches || []) {
    for (const f of Object.keys(p)) if (!["path", "target"].includes(f)) fail(`${rel}: patch field ${f} is not handled by scripts/check-k8s`);
    const docs = readYamlDocs(inside(dir, p.path, rel));
    if (docs.length !== 1) fail(`${rel}: patch ${p.path} must hold one document`);
    const patch = docs[0];
    const t = p.target;
    if (t) for (const f of Object.keys(t)) if (!["kind", "name"].includes(f)) fail(`${rel}: patch target field ${f} is not handled by scripts/check-k8s`);
    const hits = items.filter((it) => t
      ? (!t.kind || it.obj.kind === t.kind) && (!t.name || it.obj.metadata.name === t.name)
      : it.obj.kind === patch.kind && it.obj.metadata.name === patch.metadata?.name);
    if (!hits.length) fail(`${rel}: patch ${p.path} matches nothing`);
    for (const it of hits) {
      const body = structuredClone(patch);
      delete body.apiVersion;
      delete body.kind;
      if (body.metadata) delete body.metadata.name;
      smp(it.obj, body, `${rel}: patch ${p.path}`);
    }
  }
  if (k.namespace)
    for (const it of items) if (!CLUSTER_SCOPED.has(it.obj.kind)) it.obj.metadata.namespace = k.namespace;
  for (const im of k.images || []) {
    for (const f of Object.keys(im)) if (!["name", "newName", "newTag", "digest"].includes(f)) fail(`${rel}: images field ${f}`);
    let used = false;
    for (const it of items)
      for (const ps of podSpecs(it.obj))
        for (const c of containersOf(ps)) {
          const cur = splitImage(c.image || "");
          if (cur.name !== im.name) continue;
          used = true;
          const tag = im.digest ? "" : im.newTag !== undefined ? `:${im.newTag}` : cur.tag ? `:${cur.tag}` : "";
          c.image = `${im.newName || cur.name}${tag}${im.digest ? `@${im.digest}` : cur.digest}`;
        }
    if (!used) fail(`${rel}: images: no container uses image ${im.name}`);
  }
  return { items };
}

// A content hash of a generated ConfigMap/Secret for its name suffix. Not
// byte-for-byte kustomize's suffix (the check needs only that the name
// changes with the content and that references follow it).
function goJson(v) {
  if (Array.isArray(v)) return `[${v.map(goJson).join(",")}]`;
  if (v && typeof v === "object")
    return `{${Object.keys(v).sort().map((k) => `${goJson(k)}:${goJson(v[k])}`).join(",")}}`;
  return JSON.stringify(v).replace(/</g, "\\u003c").replace(/>/g, "\\u003e").replace(/&/g, "\\u0026")
    .replace(/\u2028/g, "\\u2028").replace(/\u2029/g, "\\u2029");
}
function nameHash(o) {
  const m = { kind: o.kind, name: o.metadata.name, data: o.data || {} };
  if (o.kind === "Secret") m.type = o.type;
  const hex = createHash("sha256").update(goJson(m)).digest("hex").slice(0, 10);
  return hex.replace(/[0134ae]/g, (c) => ({ 0: "g", 1: "h", 3: "k", a: "m", e: "t" })[c] ?? c);
}

function render(dir) {
  const { items } = build(dir);
  const renamed = { ConfigMap: {}, Secret: {} };
  for (const it of items) {
    if (!it.hash) continue;
    const n = it.obj.metadata.name;
    it.obj.metadata.name = `${n}-${nameHash(it.obj)}`;
    renamed[it.obj.kind][n] = it.obj.metadata.name;
  }
  const ref = (kind, holder, field) => {
    if (holder && renamed[kind][holder[field]]) holder[field] = renamed[kind][holder[field]];
  };
  for (const it of items)
    for (const ps of podSpecs(it.obj)) {
      for (const v of ps.volumes || []) {
        ref("ConfigMap", v.configMap, "name");
        ref("Secret", v.secret, "secretName");
        for (const s of v.projected?.sources || []) {
          ref("ConfigMap", s.configMap, "name");
          ref("Secret", s.secret, "name");
        }
      }
      for (const c of containersOf(ps)) {
        for (const e of c.envFrom || []) {
          ref("ConfigMap", e.configMapRef, "name");
          ref("Secret", e.secretRef, "name");
        }
        for (const e of c.env || []) {
          ref("ConfigMap", e.valueFrom?.configMapKeyRef, "name");
          ref("Secret", e.valueFrom?.secretKeyRef, "name");
        }
      }
      for (const s of ps.imagePullSecrets || []) ref("Secret", s, "name");
    }
  return items.map((it) => ({ obj: it.obj, file: it.file }));
}

// ---------------------------------------------------------------- schemas

const schemaCache = new Map();
async function validatorFor(apiVersion, kind) {
  const id = `${apiVersion}/${kind}`;
  if (schemaCache.has(id)) return schemaCache.get(id);
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  const pkgs = group.endsWith("keda.sh")
    ? [`@kubernetes-models/keda/${group}/${version}/${kind}.js`]
    : [`kubernetes-models/${group ? `${group}/` : ""}${version}/${kind}.js`];
  let fn = null;
  for (const spec of pkgs) {
    const file = path.join(here, "node_modules", spec);
    if (!fs.existsSync(file)) continue;
    // The model module imports its compiled schema; load that validator
    // directly (the model's constructor would copy the object first).
    const m = /from"(\.\.\/[^"]*_schemas\/[^"]+)"/.exec(fs.readFileSync(file, "utf8"));
    if (!m) fail(`${spec}: no schema import`);
    fn = (await import(pathToFileURL(path.resolve(path.dirname(file), m[1])).href)).validate;
  }
  if (!fn) fail(`${apiVersion} ${kind}: no schema in kubernetes-models or @kubernetes-models/keda (unknown kind or API version)`);
  schemaCache.set(id, fn);
  return fn;
}

// The schemas have no additionalProperties: false, so a misspelt field
// (readinesProbe) passes them. The validator reads every property its schema
// knows: an object it looked into, whose key it never read, has an unknown
// field. Objects it never looked into are free-form (or not its business).
function tracked(v, touched) {
  if (!v || typeof v !== "object") return v;
  const rec = { keys: new Set(), all: false, any: false };
  touched.set(v, rec);
  const proxy = new Proxy(v, {
    get(t, k) {
      rec.any = true;
      if (typeof k === "string") rec.keys.add(k);
      return tracked(t[k], touched) ?? t[k];
    },
    has(t, k) {
      rec.any = true;
      if (typeof k === "string") rec.keys.add(k);
      return k in t;
    },
    ownKeys(t) {
      rec.any = rec.all = true;
      return Reflect.ownKeys(t);
    },
  });
  return proxy;
}
function unknownFields(v, touched, at, out) {
  if (!v || typeof v !== "object") return;
  const rec = touched.get(v);
  if (!Array.isArray(v) && rec && rec.any && !rec.all)
    for (const k of Object.keys(v)) if (!rec.keys.has(k)) out.push(`${at}/${k}: unknown field`);
  for (const [k, c] of Object.entries(v)) unknownFields(c, touched, Array.isArray(v) ? `${at}/${k}` : `${at}/${k}`, out);
}

async function validateSchema(obj) {
  if (!obj.apiVersion || !obj.kind) return ["apiVersion and kind are required"];
  const fn = await validatorFor(obj.apiVersion, obj.kind);
  const touched = new WeakMap();
  const data = structuredClone(obj);
  const errs = [];
  if (!fn(tracked(data, touched)))
    for (const e of fn.errors) errs.push(`${e.instancePath || "/"}: ${e.message || e.keyword} ${JSON.stringify(e.params)}`);
  unknownFields(data, touched, "", errs);
  const name = obj.metadata?.name || "";
  if (!/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/.test(name)) errs.push(`/metadata/name: "${name}" is not a DNS-1123 name`);
  return [...new Set(errs)];
}

// ---------------------------------------------------------------- freshet

function freshetFacts() {
  const facts = {};
  const cfiles = [];
  for (const d of ["common", ...fs.readdirSync(path.join(src, "services")).map((s) => `services/${s}`)]) {
    const p = path.join(src, d);
    if (!fs.statSync(p).isDirectory()) continue;
    for (const f of fs.readdirSync(p)) if (f.endsWith(".c")) cfiles.push(path.join(p, f));
  }
  facts.envNames = new Set();
  for (const f of cfiles)
    for (const m of fs.readFileSync(f, "utf8").matchAll(/"(FRESHET_[A-Z0-9_]+)"/g)) facts.envNames.add(m[1]);
  const names = fs.readFileSync(path.join(src, "common/names.c"), "utf8");
  const sp = /#define\s+STREAM_PREFIX\s+"([^"]+)"/.exec(names);
  if (!sp) fail("common/names.c: no STREAM_PREFIX");
  facts.streamPrefix = sp[1];
  // A dataset's stream name: STREAM_PREFIX then fr_names_stream's format
  // (its hash tag), e.g. fr:stream:{players.events}.
  const sf = /char \*fr_names_stream\(const char \*qname\)\s*\{[^}]*?STREAM_PREFIX\s+"([^"]*%s[^"]*)"/.exec(names);
  if (!sf) fail("common/names.c: fr_names_stream's format not found");
  facts.streamName = (qname) => facts.streamPrefix + sf[1].replace("%s", qname);
  // Partition i > 0 of a partitioned dataset's stream: fr_names_stream_part's
  // format, e.g. fr:stream:{players.events/1}.
  const pf = /char \*fr_names_stream_part\([^)]*\)\s*\{[^}]*?STREAM_PREFIX\s+"([^"]*%s[^"]*%u[^"]*)"/.exec(names);
  if (!pf) fail("common/names.c: fr_names_stream_part's format not found");
  facts.streamNames = (qname, parts) => [facts.streamName(qname)].concat(
    Array.from({ length: Math.max(parts, 1) - 1 }, (_, i) => facts.streamPrefix + pf[1].replace("%s", qname).replace("%u", String(i + 1))));
  const gh = /#define\s+FR_NAMES_GROUP\s+"([^"]+)"/.exec(fs.readFileSync(path.join(src, "common/names.h"), "utf8"));
  if (!gh) fail("common/names.h: no FR_NAMES_GROUP");
  facts.group = gh[1];
  const compose = YAML.parse(fs.readFileSync(path.join(src, "docker-compose.yml"), "utf8"), { merge: true });
  facts.composeImages = new Set(Object.values(compose.services || {})
    .filter((s) => s.build && (s.build.target || "runtime") === "runtime").map((s) => s.image));
  const df = fs.readFileSync(path.join(src, "deploy/Dockerfile"), "utf8");
  facts.binaries = new Set([...df.matchAll(/build\/(freshet-[a-z]+)/g)].map((m) => m[1]));
  return facts;
}

function datasetsOf(pipelineYaml) {
  const p = YAML.parse(pipelineYaml);
  // each dataset with its number of streams (`partitions:`, default 1)
  return { name: p.pipeline, datasets: Object.entries(p.datasets || {}).map(([d, v]) => [d, Number(v?.partitions || 1)]) };
}

const env = (c, name) => (c.env || []).find((e) => e.name === name);
function portOf(addr, what) {
  const m = /^([^:]*):(\d+)$/.exec(addr || "");
  if (!m) fail(`${what}: "${addr}" is not HOST:PORT`);
  return { host: m[1], port: Number(m[2]) };
}
function probePort(c, probe) {
  const p = c[probe]?.httpGet?.port;
  if (typeof p === "number") return p;
  return (c.ports || []).find((x) => x.name === p)?.containerPort;
}

// Checks one rendered kustomization; returns error strings.
function checkFreshet(objs, facts, { complete, dirRel }) {
  const errs = [];
  const e = (m) => errs.push(m);
  const find = (kind, name) => objs.find((o) => o.kind === kind && o.metadata.name === name);
  const cms = objs.filter((o) => o.kind === "ConfigMap");
  const deploys = objs.filter((o) => o.kind === "Deployment");
  const byComponent = {};
  for (const d of deploys) byComponent[d.metadata.labels?.["app.kubernetes.io/component"]] = d;
  for (const comp of ["api", "loader", "ingest"]) if (!byComponent[comp]) e(`no Deployment with app.kubernetes.io/component: ${comp}`);
  const images = new Set();
  for (const o of objs) {
    if (o.kind === "StatefulSet") e(`${o.kind} ${o.metadata.name}: Redis and PostgreSQL are external services, not manifests of freshet`);
    for (const ps of podSpecs(o))
      for (const c of containersOf(ps)) {
        const im = splitImage(c.image || "");
        // The base names the image docker-compose.yml builds; an overlay
        // retags it (its images: entries must match a container: build()).
        if (dirRel.endsWith("base") && !facts.composeImages.has(c.image))
          e(`${o.metadata.name}: image ${c.image} is not the image docker-compose.yml builds (${[...facts.composeImages].join(", ")})`);
        images.add(c.image);
        if (/redis|postgres/.test(im.name)) e(`${o.metadata.name}: image ${c.image}: Redis and PostgreSQL are external services`);
        if (c.command && !facts.binaries.has(c.command[0])) e(`${o.metadata.name}: command ${c.command[0]} is not a binary of deploy/Dockerfile`);
        // Env names: each one a daemon reads.
        const names = (c.env || []).map((x) => x.name);
        for (const f of c.envFrom || []) {
          const cm = f.configMapRef && find("ConfigMap", f.configMapRef.name);
          const sec = f.secretRef && find("Secret", f.secretRef.name);
          if (f.configMapRef && !cm && complete) e(`${o.metadata.name}: envFrom ConfigMap ${f.configMapRef.name} does not exist`);
          if (f.secretRef && !sec && complete) e(`${o.metadata.name}: envFrom Secret ${f.secretRef.name} does not exist`);
          names.push(...Object.keys((cm || sec || {}).data || {}));
        }
        for (const n of names) if (!facts.envNames.has(n)) e(`${o.metadata.name}: env ${n} is read by no daemon (not in common/ or services/)`);
        for (const x of c.env || []) {
          const r = x.valueFrom?.secretKeyRef || x.valueFrom?.configMapKeyRef;
          if (!r || !complete) continue;
          const kind = x.valueFrom.secretKeyRef ? "Secret" : "ConfigMap";
          const t = find(kind, r.name);
          if (!t) e(`${o.metadata.name}: env ${x.name}: ${kind} ${r.name} does not exist`);
          else if (!(r.key in (t.data || {}))) e(`${o.metadata.name}: env ${x.name}: ${kind} ${r.name} has no key ${r.key}`);
        }
        // Resources: requests and limits for cpu and memory.
        for (const side of ["requests", "limits"])
          for (const r of ["cpu", "memory"]) if (!c.resources?.[side]?.[r]) e(`${o.metadata.name}: no resources.${side}.${r}`);
        const mounts = c.volumeMounts || [];
        for (const m of mounts) if (!(ps.volumes || []).some((v) => v.name === m.name)) e(`${o.metadata.name}: volumeMount ${m.name} has no volume`);
        // Pipelines from a mounted ConfigMap: FRESHET_PIPELINES_DIR is where it is mounted.
        const pdir = names.includes("FRESHET_PIPELINES_DIR")
          ? (env(c, "FRESHET_PIPELINES_DIR")?.value ?? cms.find((cm) => cm.data?.FRESHET_PIPELINES_DIR)?.data.FRESHET_PIPELINES_DIR)
          : null;
        if (pdir && !mounts.some((m) => m.mountPath === pdir)) e(`${o.metadata.name}: FRESHET_PIPELINES_DIR ${pdir} is not a mounted volume`);
      }
    for (const ps of podSpecs(o))
      for (const v of ps.volumes || []) {
        if (!complete) continue;
        if (v.configMap) {
          const cm = find("ConfigMap", v.configMap.name);
          if (!cm) e(`${o.metadata.name}: volume ${v.name}: ConfigMap ${v.configMap.name} does not exist`);
          else for (const i of v.configMap.items || []) if (!(i.key in (cm.data || {}))) e(`${o.metadata.name}: volume ${v.name}: no key ${i.key}`);
        }
        if (v.secret) {
          const s = find("Secret", v.secret.secretName);
          if (!s) e(`${o.metadata.name}: volume ${v.name}: Secret ${v.secret.secretName} does not exist`);
          else for (const i of v.secret.items || []) if (!(i.key in (s.data || {}))) e(`${o.metadata.name}: volume ${v.name}: no key ${i.key}`);
        }
        if (v.persistentVolumeClaim && !find("PersistentVolumeClaim", v.persistentVolumeClaim.claimName))
          e(`${o.metadata.name}: volume ${v.name}: PersistentVolumeClaim ${v.persistentVolumeClaim.claimName} does not exist`);
      }
  }
  if (images.size > 1) e(`the daemons run different images (${[...images].join(", ")}): one image holds all three`);
  // The configured pipelines and their datasets, from the pipelines the pods read.
  const config = cms.find((cm) => cm.data && "FRESHET_PIPELINES" in cm.data);
  const wanted = (config?.data.FRESHET_PIPELINES || "").split(",").map((s) => s.trim()).filter(Boolean);
  if (!wanted.length) e("FRESHET_PIPELINES is not set in a ConfigMap the daemons read");
  const pipelines = {};
  const mounted = cms.find((cm) => Object.keys(cm.data || {}).some((k) => k.endsWith(".pipeline.yaml")));
  for (const name of wanted) {
    let text = null;
    if (mounted) {
      text = mounted.data[`${name}.pipeline.yaml`];
      if (text === undefined) { e(`pipeline ${name}: not in ConfigMap ${mounted.metadata.name}`); continue; }
    } else {
      const f = path.join(src, "pipelines", name, "pipeline.yaml");
      if (!fs.existsSync(f)) { e(`pipeline ${name}: no pipelines/${name}/pipeline.yaml in the image`); continue; }
      text = fs.readFileSync(f, "utf8");
    }
    const p = datasetsOf(text);
    if (p.name !== name) e(`pipeline ${name}: its YAML says pipeline: ${p.name}`);
    pipelines[name] = p.datasets;
  }
  // A mounted pipelines ConfigMap holds the bundled pipelines' files as they are.
  if (mounted) {
    for (const d of deploys)
      for (const ps of podSpecs(d))
        for (const v of ps.volumes || [])
          if (v.configMap?.name === mounted.metadata.name) {
            const keys = new Set((v.configMap.items || []).map((i) => i.key));
            for (const k of Object.keys(mounted.data)) if (!keys.has(k)) e(`${d.metadata.name}: volume ${v.name} leaves key ${k} out of its items`);
            // Every SQL file a mounted pipeline names is mounted beside it.
            const paths = new Set((v.configMap.items || []).map((i) => i.path));
            for (const name of wanted) {
              const text = mounted.data[`${name}.pipeline.yaml`] || "";
              for (const m of text.matchAll(/^\s*sql:\s*["']?([^\s"'#]+\.sql)/gm))
                if (!paths.has(`${name}/${m[1]}`)) e(`${d.metadata.name}: volume ${v.name} lacks ${name}/${m[1]}, which pipeline ${name} names`);
            }
            for (const i of v.configMap.items || []) {
              const repo = path.join(src, "pipelines", i.path);
              if (!fs.existsSync(repo)) e(`${dirRel}: ${i.path} is not a file of pipelines/ (the example mounts the bundled pipelines)`);
              else if (fs.readFileSync(repo, "utf8") !== mounted.data[i.key]) e(`${dirRel}: ${i.key} differs from pipelines/${i.path}: copy it again`);
            }
          }
  }
  // api: probes on FRESHET_API_ADDR's port.
  const api = byComponent.api;
  if (api) {
    const c = podSpecs(api)[0].containers[0];
    const addr = env(c, "FRESHET_API_ADDR")?.value ?? "0.0.0.0:8000";
    const { host, port } = portOf(addr, "FRESHET_API_ADDR");
    if (host !== "0.0.0.0") e(`freshet-api: FRESHET_API_ADDR ${addr}: the probes and the Service need 0.0.0.0`);
    if (!(c.ports || []).some((p) => p.containerPort === port)) e(`freshet-api: no containerPort ${port} (FRESHET_API_ADDR)`);
    if (c.readinessProbe?.httpGet?.path !== "/readyz") e("freshet-api: readinessProbe is not GET /readyz");
    if (c.livenessProbe?.httpGet?.path !== "/healthz") e("freshet-api: livenessProbe is not GET /healthz");
    for (const p of ["readinessProbe", "livenessProbe"]) if (probePort(c, p) !== port) e(`freshet-api: ${p} port is not ${port} (FRESHET_API_ADDR)`);
    const svc = objs.find((o) => o.kind === "Service" && o.metadata.name === api.metadata.name);
    if (!svc) e("no Service freshet-api");
    else for (const sp of svc.spec.ports || []) {
      const tp = typeof sp.targetPort === "number" ? sp.targetPort : (c.ports || []).find((x) => x.name === sp.targetPort)?.containerPort;
      if (tp !== port) e(`Service ${svc.metadata.name}: targetPort ${sp.targetPort} is not the api's port ${port}`);
    }
    const labels = api.spec.template.metadata.labels;
    const sel = (s) => Object.entries(s || {}).every(([k, v]) => labels[k] === v);
    const hpa = objs.find((o) => o.kind === "HorizontalPodAutoscaler" && o.spec.scaleTargetRef.name === api.metadata.name);
    if (!hpa) e("no HorizontalPodAutoscaler for freshet-api");
    else if (hpa.apiVersion !== "autoscaling/v2") e(`HorizontalPodAutoscaler ${hpa.metadata.name}: ${hpa.apiVersion}, not autoscaling/v2`);
    const pdb = objs.find((o) => o.kind === "PodDisruptionBudget" && sel(o.spec.selector?.matchLabels));
    if (!pdb) e("no PodDisruptionBudget selects the api pods");
    if (svc && !sel(svc.spec.selector)) e(`Service ${svc.metadata.name}: selector does not match the api pods`);
  }
  // ingest and loader: admin port on the pod's address, probes on it.
  for (const comp of ["ingest", "loader"]) {
    const d = byComponent[comp];
    if (!d) continue;
    const c = podSpecs(d)[0].containers[0];
    const addr = env(c, "FRESHET_ADMIN_ADDR")?.value;
    if (!addr) { e(`${d.metadata.name}: FRESHET_ADMIN_ADDR unset (the default listens on loopback, unreachable by probes)`); continue; }
    const { host, port } = portOf(addr, `${d.metadata.name} FRESHET_ADMIN_ADDR`);
    if (host !== "0.0.0.0") e(`${d.metadata.name}: FRESHET_ADMIN_ADDR ${addr}: probes need 0.0.0.0`);
    if (c.readinessProbe?.httpGet?.path !== "/readyz") e(`${d.metadata.name}: readinessProbe is not GET /readyz`);
    if (c.livenessProbe?.httpGet?.path !== "/healthz") e(`${d.metadata.name}: livenessProbe is not GET /healthz`);
    for (const p of ["readinessProbe", "livenessProbe"]) if (probePort(c, p) !== port) e(`${d.metadata.name}: ${p} port is not ${port} (FRESHET_ADMIN_ADDR)`);
  }
  if (byComponent.ingest && byComponent.ingest.spec.replicas !== 2) e(`freshet-ingest: replicas ${byComponent.ingest.spec.replicas}, want 2`);
  // loader: a KEDA ScaledObject, one trigger per dataset stream of group loader.
  const loader = byComponent.loader;
  const so = objs.find((o) => o.kind === "ScaledObject" && o.spec.scaleTargetRef?.name === loader?.metadata.name);
  if (loader && !so) e("no ScaledObject scales freshet-loader");
  if (so) {
    if (loader.spec.replicas !== undefined) e("freshet-loader: spec.replicas is set, but the ScaledObject owns it");
    if (!(so.spec.minReplicaCount >= 1)) e(`ScaledObject ${so.metadata.name}: minReplicaCount must be >= 1 (entries become pending only once a loader reads them)`);
    const streams = new Set();
    for (const t of so.spec.triggers || []) {
      const md = t.metadata || {};
      if (t.type === "redis-streams") { if (!md.address && !md.host) e(`ScaledObject: trigger ${md.stream}: no address`); }
      else if (t.type === "redis-cluster-streams") { if (!md.addresses && !md.hosts) e(`ScaledObject: trigger ${md.stream}: no addresses`); }
      else e(`ScaledObject: trigger type ${t.type} (redis-streams, or redis-cluster-streams with a Redis Cluster)`);
      if (md.consumerGroup !== facts.group) e(`ScaledObject: trigger ${md.stream}: consumerGroup ${md.consumerGroup}, not ${facts.group} (common/names.h)`);
      if (!md.pendingEntriesCount) e(`ScaledObject: trigger ${md.stream}: no pendingEntriesCount`);
      if (!String(md.stream || "").startsWith(facts.streamPrefix)) e(`ScaledObject: stream ${md.stream} lacks the prefix ${facts.streamPrefix} (common/names.c)`);
      streams.add(md.stream);
      if (t.authenticationRef && complete) {
        const ta = find(t.authenticationRef.kind || "TriggerAuthentication", t.authenticationRef.name);
        if (!ta) e(`ScaledObject: authenticationRef ${t.authenticationRef.name} does not exist`);
        else for (const r of ta.spec.secretTargetRef || []) {
          const s = find("Secret", r.name);
          if (!s) e(`TriggerAuthentication ${ta.metadata.name}: Secret ${r.name} does not exist (a generated Secret needs disableNameSuffixHash: kustomize does not rewrite KEDA's references)`);
          else if (!(r.key in (s.data || {}))) e(`TriggerAuthentication ${ta.metadata.name}: Secret ${r.name} has no key ${r.key}`);
        }
      }
    }
    // one trigger per stream: every partition of a partitioned dataset
    const want = new Set(Object.entries(pipelines).flatMap(([p, ds]) => ds.flatMap(([d, n]) => facts.streamNames(`${p}.${d}`, n))));
    for (const s of want) if (!streams.has(s)) e(`ScaledObject: no trigger for stream ${s}`);
    for (const s of streams) if (!want.has(s)) e(`ScaledObject: stream ${s} is no dataset of FRESHET_PIPELINES (${wanted.join(",")})`);
  }
  return errs;
}

// ---------------------------------------------------------------- main

async function checkDir(dir, facts) {
  const rel = path.relative(src, dir);
  const rendered = render(dir);
  const errs = [];
  for (const { obj, file } of rendered)
    for (const m of await validateSchema(obj)) errs.push(`${rel}: ${obj.kind} ${obj.metadata?.name} (${file}): ${m}`);
  const complete = !rel.endsWith("base"); // the base leaves the Secret to overlays
  for (const m of checkFreshet(rendered.map((r) => r.obj), facts, { complete, dirRel: rel })) errs.push(`${rel}: ${m}`);
  return { rendered, errs };
}

function kustomizations() {
  const root = path.join(src, "deploy/k8s");
  const out = [path.join(root, "base")];
  const ov = path.join(root, "overlays");
  for (const d of fs.existsSync(ov) ? fs.readdirSync(ov).sort() : []) out.push(path.join(ov, d));
  return out;
}

// Breaks the rendered example on purpose: each must be reported.
async function selfTest(dir, facts) {
  const base = render(dir).map((r) => r.obj);
  const dep = (objs, comp) => objs.find((o) => o.kind === "Deployment" && o.metadata.labels["app.kubernetes.io/component"] === comp);
  const cases = [
    ["a misspelt field", (o) => { const c = dep(o, "api").spec.template.spec.containers[0]; c.readinesProbe = c.readinessProbe; delete c.readinessProbe; }],
    ["a wrong type", (o) => { dep(o, "api").spec.template.spec.containers[0].ports[0].containerPort = "8000"; }],
    ["a bad quantity", (o) => { dep(o, "loader").spec.template.spec.containers[0].resources.limits.memory = "lots"; }],
    ["an env name no daemon reads", (o) => { dep(o, "api").spec.template.spec.containers[0].env.push({ name: "FRESHET_API_PORT", value: "8000" }); }],
    ["the api port apart from FRESHET_API_ADDR", (o) => { dep(o, "api").spec.template.spec.containers[0].env.find((x) => x.name === "FRESHET_API_ADDR").value = "0.0.0.0:8080"; }],
    ["the loader admin port on loopback", (o) => { dep(o, "loader").spec.template.spec.containers[0].env.find((x) => x.name === "FRESHET_ADMIN_ADDR").value = "127.0.0.1:9102"; }],
    ["a stream name not from common/names.c", (o) => { o.find((x) => x.kind === "ScaledObject").spec.triggers[0].metadata.stream = "stream:players.events"; }],
    ["a consumer group other than loader", (o) => { o.find((x) => x.kind === "ScaledObject").spec.triggers[0].metadata.consumerGroup = "loaders"; }],
    ["a dataset without a trigger", (o) => { o.find((x) => x.kind === "ScaledObject").spec.triggers[0].metadata.stream = facts.streamName("players.nothing"); }],
    ["a missing Secret key", (o) => { const s = o.find((x) => x.kind === "Secret" && x.metadata.name.startsWith("freshet-secrets")); delete s.data.FRESHET_DATABASE_URL; }],
    ["a Secret name kustomize left unsuffixed", (o) => { o.find((x) => x.kind === "TriggerAuthentication").spec.secretTargetRef[0].name = "freshet-secrets"; }],
    ["ingest with one replica", (o) => { dep(o, "ingest").spec.replicas = 1; }],
    ["a home-made Redis", (o) => { dep(o, "ingest").spec.template.spec.containers[0].image = "redis:7"; }],
    ["an unquoted on (YAML 1.1: a boolean)", (o) => { dep(o, "api").spec.template.spec.containers[0].env.find((x) => x.name === "FRESHET_API_AUTH").value = YAML.parse("v: on", { version: "1.1" }).v; }],
    ["a probe on another path", (o) => { dep(o, "api").spec.template.spec.containers[0].livenessProbe.httpGet.path = "/readyz"; }],
    ["a model's SQL file not mounted", (o) => { for (const d of o.filter((x) => x.kind === "Deployment")) for (const v of d.spec.template.spec.volumes || []) if (v.configMap?.items) v.configMap.items = v.configMap.items.filter((i) => !i.path.endsWith("player_days.sql")); const cm = o.find((x) => x.kind === "ConfigMap" && x.metadata.name.startsWith("freshet-pipelines")); delete cm.data["players.models.player_days.sql"]; }],
    ["a pipeline file unlike pipelines/", (o) => { const cm = o.find((x) => x.kind === "ConfigMap" && x.metadata.name.startsWith("freshet-pipelines")); cm.data["players.pipeline.yaml"] += "\n# changed\n"; }],
  ];
  let bad = 0;
  for (const [what, mutate] of cases) {
    const objs = structuredClone(base);
    mutate(objs);
    const errs = [];
    for (const o of objs) errs.push(...(await validateSchema(o)));
    errs.push(...checkFreshet(objs, facts, { complete: true, dirRel: path.relative(src, dir) }));
    if (errs.length) console.log(`self-test: ${what}: found (${errs[0]})`);
    else { console.log(`self-test: ${what}: NOT FOUND`); bad++; }
  }
  return { n: cases.length, bad };
}

async function main() {
  const facts = freshetFacts();
  if (mode === "--render") {
    for (const { obj } of render(path.resolve(process.argv[4]))) process.stdout.write(`---\n${YAML.stringify(obj, { version: "1.1" })}`);
    return 0;
  }
  let passed = 0;
  let failed = 0;
  for (const dir of kustomizations()) {
    const { rendered, errs } = await checkDir(dir, facts);
    const rel = path.relative(src, dir);
    if (errs.length) { failed++; for (const m of errs) console.log(`FAIL ${m}`); }
    else { passed++; console.log(`ok ${rel}: ${rendered.length} objects (${[...new Set(rendered.map((r) => r.obj.kind))].join(", ")})`); }
  }
  if (mode === "--self-test") {
    const ex = path.join(src, "deploy/k8s/overlays/example");
    const { n, bad } = await selfTest(ex, facts);
    passed += n - bad;
    failed += bad;
  }
  console.log(`${passed} passed, ${failed} failed`);
  return failed ? 1 : 0;
}

main().then((rc) => process.exit(rc), (err) => {
  console.log(err instanceof CheckError ? `FAIL ${err.message}` : err.stack);
  console.log("0 passed, 1 failed");
  process.exit(1);
});
