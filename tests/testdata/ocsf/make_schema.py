"""Generates the JSON Schema the OCSF tests validate events against, from the public OCSF schema.

Run once per OCSF release, on the schema compiled from the ``ocsf/ocsf-schema`` repository by the
OCSF project's own compiler (``pip install ocsf-lib``)::

    git -C ocsf-schema checkout v1.5.0
    python -m ocsf.compile ocsf-schema > ocsf-1.5.0.json
    python make_schema.py ocsf-1.5.0.json detection_finding host,security_control > detection_finding-1.5.0.schema.json

Every attribute of the class and of each object it reaches becomes a property with its OCSF type
(arrays where ``is_array``), ``required`` where the schema says so, the enumerated ids as ``enum``
and no other properties (``additionalProperties: false``): a misspelt name fails validation
instead of passing as an extra. Attributes of profiles not named are left out.
"""

from __future__ import annotations

import json
import sys

_BASE = {"string_t": {"type": "string"}, "integer_t": {"type": "integer"}, "long_t": {"type": "integer"},
         "float_t": {"type": "number"}, "boolean_t": {"type": "boolean"}, "json_t": {}}


def _scalar(schema: dict, type_name: str) -> dict:
    seen = type_name
    while seen not in _BASE:
        seen = schema["types"][seen]["type"]
    return dict(_BASE[seen])


def _properties(schema: dict, attributes: dict, profiles: set[str], wanted: list[str]) -> dict:
    props, required = {}, []
    for name, a in sorted(attributes.items()):
        if a.get("profile") and a["profile"] not in profiles:
            continue
        if a.get("object_type") or a["type"] in schema["objects"]:
            obj = a.get("object_type") or a["type"]
            wanted.append(obj)
            item = {"$ref": f"#/$defs/{obj}"}
        else:
            item = _scalar(schema, a["type"])
            if a.get("enum") and item.get("type") == "integer":
                item["enum"] = sorted(int(k) for k in a["enum"])
        props[name] = {"type": "array", "items": item} if a.get("is_array") else item
        if a.get("requirement") == "required":
            required.append(name)
    return {"type": "object", "properties": props, "required": required, "additionalProperties": False}


def build(schema: dict, class_name: str, profiles: set[str]) -> dict:
    wanted: list[str] = []
    cls = schema["classes"][class_name]
    root = _properties(schema, cls["attributes"], profiles, wanted)
    root["properties"]["class_uid"]["enum"] = [cls["uid"]]
    defs: dict = {}
    while wanted:
        name = wanted.pop()
        if name not in defs:
            defs[name] = _properties(schema, schema["objects"][name]["attributes"], profiles, wanted)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": f"OCSF {schema['version']} {cls['caption']} ({cls['uid']}), profiles: {', '.join(sorted(profiles))}",
            **root, "$defs": dict(sorted(defs.items()))}


if __name__ == "__main__":
    compiled, class_name = json.load(open(sys.argv[1])), sys.argv[2]
    profiles = set(filter(None, sys.argv[3].split(","))) if len(sys.argv) > 3 else set()
    json.dump(build(compiled, class_name, profiles), sys.stdout, indent=1, sort_keys=False)
    sys.stdout.write("\n")
