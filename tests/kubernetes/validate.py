"""Validates Kubernetes manifests offline, strictly, for tests/tests/kubernetes.rs.

Usage: validate.py KUBERNETES_VERSION MANIFEST...

Built-in kinds are checked with kubernetes-validate (pinned in scripts/install-deps.sh), which
ships the Kubernetes JSON schemas; its strict mode rejects unknown fields, as
`kubectl apply --validate=strict` does. Custom resources are checked against the CRD schemas
vendored beside this file (`*.schema.json`), with unknown fields rejected too, since the API
server would silently drop them. A kind with no schema is an error, not a warning. Prints one
line per resource and exits 1 if any failed.
"""

import copy
import json
import pathlib
import sys

import jsonschema
import kubernetes_validate
import yaml

HERE = pathlib.Path(__file__).resolve().parent


def crd_schemas():
    """(apiVersion, kind) -> JSON schema, from the vendored CRD schemas."""
    schemas = {}
    for path in sorted(HERE.glob("*.schema.json")):
        vendored = json.loads(path.read_text())
        api_version = "%s/%s" % (vendored["group"], vendored["version"])
        schemas[(api_version, vendored["kind"])] = strict(copy.deepcopy(vendored["openAPIV3Schema"]))
    return schemas


def strict(schema):
    """Rejects unknown fields wherever the structural schema lists the fields an object has."""
    if isinstance(schema, dict):
        if (
            schema.get("type") == "object"
            and "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        for value in schema.values():
            strict(value)
    elif isinstance(schema, list):
        for value in schema:
            strict(value)
    return schema


def validate(resource, version, schemas):
    """None when `resource` is valid, else why not."""
    key = (resource.get("apiVersion"), resource.get("kind"))
    if key in schemas:
        errors = sorted(jsonschema.Draft202012Validator(schemas[key]).iter_errors(resource), key=str)
        if errors:
            return "; ".join(
                "%s: %s" % (".".join(str(p) for p in error.path) or "(top)", error.message) for error in errors
            )
        return None
    try:
        kubernetes_validate.validate(resource, version, strict=True)
    except kubernetes_validate.ValidationError as error:
        return "%s: %s" % (".".join(str(p) for p in error.path) or "(top)", error.message)
    except kubernetes_validate.SchemaNotFoundError as error:
        return error.message
    return None


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    version, files = argv[1], argv[2:]
    schemas = crd_schemas()
    failed = 0
    for name in files:
        with open(name) as f:
            resources = [doc for doc in yaml.safe_load_all(f) if doc]
        if not resources:
            print("ERROR %s: no resources" % name)
            failed += 1
        for resource in resources:
            what = "%s/%s" % (resource.get("kind"), (resource.get("metadata") or {}).get("name"))
            problem = validate(resource, version, schemas)
            if problem:
                print("ERROR %s %s (Kubernetes %s): %s" % (name, what, version, problem))
                failed += 1
            else:
                print("OK %s %s (Kubernetes %s)" % (name, what, version))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
