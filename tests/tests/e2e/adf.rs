//! `deploy/adf/`: every Data Factory resource deserialises with the Data Factory SDK's models
//! (azure-mgmt-datafactory 9.3.0, whose models resolve activity and trigger types), nothing is
//! lost when it is serialised back, every reference resolves, and every URL is a route of the
//! server and names a job of the shipped site config.

use std::path::Path;

use patientflow_e2e::{Server, path, python_json};

const CHECK: &str = r#"
import json, pathlib, re, sys, tomllib
from azure.mgmt.datafactory import models as m

adf, openapi, config = pathlib.Path(sys.argv[1]), json.load(open(sys.argv[2])), tomllib.load(open(sys.argv[3], "rb"))
jobs = {j["name"] for j in config.get("jobs", [])}
routes = [(r, re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", r) + "$")) for r in openapi["paths"]]

def lost(orig, back, where):
    # Fields of the file that the model did not keep.
    if isinstance(orig, dict):
        if not isinstance(back, dict):
            yield where
            return
        for k, v in orig.items():
            if k not in back:
                yield f"{where}.{k}"
            else:
                yield from lost(v, back[k], f"{where}.{k}")
    elif isinstance(orig, list):
        if not isinstance(back, list) or len(back) != len(orig):
            yield where
            return
        for i, (a, b) in enumerate(zip(orig, back)):
            yield from lost(a, b, f"{where}[{i}]")
    elif orig != back and not same_instant(orig, back):
        yield f"{where}: {orig!r} became {back!r}"

def same_instant(a, b):
    # The SDK writes a trigger's startTime back in UTC form ("...T02:00:00.000Z"); the
    # wall-clock value is kept (the files, not the SDK's output, are what gets deployed).
    if not (isinstance(a, str) and isinstance(b, str)):
        return False
    return re.sub(r"(\.0+)?Z$", "", b) == re.sub(r"(\.0+)?Z$", "", a)

def activities(acts):
    for a in acts or []:
        yield a
        for nested in ("if_true_activities", "if_false_activities", "activities"):
            yield from activities(getattr(a, nested, None))

def strings(v):
    if isinstance(v, dict):
        for x in v.values():
            yield from strings(x)
    elif isinstance(v, list):
        for x in v:
            yield from strings(x)
    elif isinstance(v, str):
        yield v

out = {"pipelines": {}, "triggers": {}, "urls": [], "problems": []}
pipelines = {}
for f in sorted((adf / "pipeline").glob("*.json")):
    raw = json.loads(f.read_text())
    p = m.PipelineResource.deserialize(raw)
    out["problems"] += list(lost(raw, p.serialize(keep_readonly=True), f.name))
    pipelines[raw["name"]] = p
    out["pipelines"][raw["name"]] = sorted({type(a).__name__ for a in activities(p.activities)})
for f in sorted((adf / "trigger").glob("*.json")):
    raw = json.loads(f.read_text())
    t = m.TriggerResource.deserialize(raw)
    out["problems"] += list(lost(raw, t.serialize(keep_readonly=True), f.name))
    props = t.properties
    out["triggers"][raw["name"]] = {"type": type(props).__name__, "zone": props.recurrence.time_zone,
        "frequency": props.recurrence.frequency, "pipelines": [r.pipeline_reference.reference_name for r in props.pipelines]}
    for r in props.pipelines:
        if r.pipeline_reference.reference_name not in pipelines:
            out["problems"].append(f"{f.name}: no pipeline {r.pipeline_reference.reference_name}")
for name, p in pipelines.items():
    for a in activities(p.activities):
        if isinstance(a, m.ExecutePipelineActivity) and a.pipeline.reference_name not in pipelines:
            out["problems"].append(f"{name}: no pipeline {a.pipeline.reference_name}")
    for s in strings(p.serialize()):
        for url in re.findall(r"'(/[^']*)'", s):
            route = next((r for r, rx in routes if rx.match(url)), None)
            job = url.split("/")[4] if url.startswith("/api/v1/pipelines/") else None
            out["urls"].append({"pipeline": name, "url": url, "route": route, "job_known": job in jobs})
print(json.dumps(out))
"#;

#[test]
fn data_factory_resources_deserialise_with_the_sdk_lose_nothing_and_call_server_routes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let openapi = dir.path().join("openapi.json");
    let doc = reqwest::blocking::get(server.url("/api/openapi.json"))
        .unwrap()
        .text()
        .unwrap();
    std::fs::write(&openapi, doc).unwrap();
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let out = python_json(
        CHECK,
        &[
            path(&deploy.join("adf")),
            path(&openapi),
            path(&deploy.join("patientflow.toml")),
        ],
    );
    assert_eq!(out["problems"], serde_json::json!([]), "{out}");

    // Activity and trigger types resolved to their models, not left generic.
    let pipelines = out["pipelines"].as_object().unwrap();
    assert_eq!(pipelines.len(), 6, "{out}");
    for job in [
        "departments-daily",
        "ehr-daily",
        "gold-hourly",
        "maintain-nightly",
    ] {
        assert_eq!(
            pipelines[&format!("pf-{job}")],
            serde_json::json!(["FailActivity", "IfConditionActivity", "WebActivity"]),
            "{job}"
        );
    }
    assert_eq!(
        pipelines["pf-daily-batch"],
        serde_json::json!(["ExecutePipelineActivity"])
    );
    let triggers = out["triggers"].as_object().unwrap();
    assert_eq!(triggers.len(), 4);
    let daily = &triggers["pf-daily-batch-0200"];
    assert_eq!(daily["type"], "ScheduleTrigger");
    assert_eq!(daily["zone"], "Central Standard Time");
    assert_eq!(daily["pipelines"], serde_json::json!(["pf-daily-batch"]));
    assert!(triggers.values().all(|t| t["type"] == "ScheduleTrigger"));

    // Every URL is a route of this server, for a job the site config has.
    let urls = out["urls"].as_array().unwrap();
    assert_eq!(urls.len(), 5, "{out}");
    for u in urls {
        assert_eq!(u["route"], "/api/v1/pipelines/{job}/runs", "{u}");
        assert_eq!(u["job_known"], true, "{u}");
    }
    // The Bicep template deploys each resource file and defines the global parameters.
    let bicep = std::fs::read_to_string(deploy.join("adf/main.bicep")).unwrap();
    for name in pipelines.keys().chain(triggers.keys()) {
        assert!(
            bicep.contains(&format!("/{name}.json')")),
            "main.bicep does not deploy {name}"
        );
    }
    for parameter in ["patientflowBaseUrl", "patientflowAppIdUri"] {
        assert!(bicep.contains(&format!("{parameter}: {{")), "{parameter}");
    }
}
