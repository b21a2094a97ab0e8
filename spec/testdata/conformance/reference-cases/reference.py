# Writes the reference parser's verdict on each file given (JSON on stdout):
# lint messages, counts and, for accepted files, what each pipeline converts
# to (node template parameters, pipeline parameters with their targets).
# Run it where valohai_yaml can be imported:
#   python3 reference.py *.yaml > EXPECTED.json
import json, sys, os
from valohai_yaml import parse
from valohai_yaml.lint import lint_file
from valohai_yaml.pipelines.conversion import PipelineConverter
out = {}
for path in sys.argv[1:]:
    r = lint_file(path)
    e = {"accepted": r.error_count == 0, "errors": r.error_count, "warnings": r.warning_count,
         "lint": [{"type": m["type"], "message": m["message"]} for m in r.messages]}
    if e["accepted"]:
        with open(path) as f:
            cfg = parse(f)
        conv = {}
        for p in cfg.pipelines.values():
            c = PipelineConverter(config=cfg, commit_identifier="latest").convert_pipeline(p)
            conv[p.name] = {"nodes": {n["name"]: n["template"].get("parameters", {}) for n in c["nodes"]},
                            "parameters": {k: {"targets": v["config"].get("targets"), "expression": v["expression"]} for k, v in c["parameters"].items()}}
        if conv:
            e["converted"] = conv
    out[os.path.basename(path)] = e
print(json.dumps(out, indent=1, sort_keys=True))
