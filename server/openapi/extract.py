#!/usr/bin/env python3
"""Writes server/openapi/openapi.json: the operations meshplane-server serves,
with their request and response shapes taken from the reference contract.

Usage: extract.py [REFERENCE_YAML] [OUTPUT_DIR]
(defaults: ../shared/reference/netbird-openapi.yml beside the repository,
and this script's folder). Also writes unserved.txt there: the reference's
operations we do not implement, one "method path" a line, which the test
checks the router refuses. Needs PyYAML (schemathesis brings it
into the venv scripts/setup-bindings.sh creates).

SERVED must list exactly what the router serves: the server's `openapi`
test checks both directions against the running binary.
"""

import copy
import json
import re
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

# Path (as the reference spells it) -> methods the router serves on it.
SERVED = {
    "/api/accounts": ["get"],
    "/api/accounts/{accountId}": ["put", "delete"],
    "/api/users": ["get", "post"],
    "/api/users/current": ["get"],
    "/api/users/{userId}": ["put", "delete"],
    "/api/users/{userId}/approve": ["post"],
    "/api/users/{userId}/reject": ["delete"],
    "/api/users/{userId}/invite": ["post"],
    "/api/users/{userId}/tokens": ["get", "post"],
    "/api/users/{userId}/tokens/{tokenId}": ["get", "delete"],
    "/api/peers": ["get"],
    "/api/peers/{peerId}": ["get", "put", "delete"],
    "/api/peers/{peerId}/accessible-peers": ["get"],
    "/api/peers/{peerId}/temporary-access": ["post"],
    "/api/peers/{peerId}/ingress/ports": ["get", "post"],
    "/api/peers/{peerId}/ingress/ports/{allocationId}": ["get", "put", "delete"],
    "/api/ingress/peers": ["get", "post"],
    "/api/ingress/peers/{ingressPeerId}": ["get", "put", "delete"],
    "/api/setup-keys": ["get", "post"],
    "/api/setup-keys/{keyId}": ["get", "put", "delete"],
    "/api/groups": ["get", "post"],
    "/api/groups/{groupId}": ["get", "put", "delete"],
    "/api/policies": ["get", "post"],
    "/api/policies/{policyId}": ["get", "put", "delete"],
    "/api/posture-checks": ["get", "post"],
    "/api/posture-checks/{postureCheckId}": ["get", "put", "delete"],
    "/api/routes": ["get", "post"],
    "/api/routes/{routeId}": ["get", "put", "delete"],
    "/api/networks": ["get", "post"],
    "/api/networks/{networkId}": ["get", "put", "delete"],
    "/api/networks/{networkId}/resources": ["get", "post"],
    "/api/networks/{networkId}/resources/{resourceId}": ["get", "put", "delete"],
    "/api/networks/{networkId}/routers": ["get", "post"],
    "/api/networks/{networkId}/routers/{routerId}": ["get", "put", "delete"],
    "/api/networks/routers": ["get"],
    "/api/dns/nameservers": ["get", "post"],
    "/api/dns/nameservers/{nsgroupId}": ["get", "put", "delete"],
    "/api/dns/settings": ["get", "put"],
    "/api/events/audit": ["get"],
    "/api/events/network-traffic": ["get"],
    "/api/locations/countries": ["get"],
    "/api/locations/countries/{country}/cities": ["get"],
    "/api/reverse-proxies/services": ["get"],
    "/api/reverse-proxies/services/{serviceId}": ["get"],
    "/api/reverse-proxies/domains": ["get", "post"],
    "/api/reverse-proxies/domains/{domainId}": ["delete"],
}

HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}

OWN_PATH = "/api/openapi.json"

ERROR = {
    "type": "object",
    "description": "Every error response of meshplane-server.",
    "properties": {
        "message": {"type": "string", "description": "What went wrong"},
        "code": {"type": "integer", "description": "The HTTP status code"},
    },
    "required": ["message", "code"],
}


class Loader(yaml.SafeLoader):
    """YAML 1.1 without implicit timestamps: examples stay the strings they are."""


Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def refs(node):
    """Every `$ref` target under `node`."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def lookup(doc, ref):
    """The node a local `#/a/b/c` reference names."""
    node = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def error_response(description):
    return {
        "description": description,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
        },
    }


def build(reference):
    paths = {}
    for path, methods in SERVED.items():
        source = reference["paths"].get(path)
        if source is None:
            raise SystemExit(f"extract.py: {path} is not in the reference")
        item = {}
        for method in methods:
            if method not in source:
                raise SystemExit(f"extract.py: {method} {path} is not in the reference")
            op = copy.deepcopy(source[method])
            op["security"] = [{"BearerAuth": []}, {"TokenAuth": []}]
            op["responses"]["default"] = {"$ref": "#/components/responses/error"}
            item[method] = op
        if "parameters" in source:
            item["parameters"] = copy.deepcopy(source["parameters"])
        paths[path] = item
    paths[OWN_PATH] = {
        "get": {
            "summary": "This document",
            "description": "The OpenAPI document of the operations this server implements.",
            "tags": ["OpenAPI"],
            "security": [],
            "responses": {
                "200": {
                    "description": "An OpenAPI 3.1 document",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
        }
    }

    # Our error shape replaces the reference's bodiless error responses.
    responses = {
        name: error_response(body["description"])
        for name, body in reference["components"]["responses"].items()
    }
    responses["error"] = error_response("Error")
    components = {
        "schemas": {"Error": ERROR},
        "responses": responses,
        "securitySchemes": copy.deepcopy(reference["components"]["securitySchemes"]),
    }

    # Copy every component the operations reach, transitively.
    pending = list(refs(paths)) + list(refs(responses))
    while pending:
        ref = pending.pop()
        section, name = ref.removeprefix("#/components/").split("/", 1)
        target = components.setdefault(section, {})
        if name in target:
            continue
        target[name] = copy.deepcopy(lookup(reference, ref))
        pending.extend(refs(target[name]))
    add_activity_codes(components)
    correct_resource_type(components)
    mark_ephemeral_services(components)
    correct_domain_creation(paths)
    correct_city_list(paths)

    return {
        "openapi": reference["openapi"],
        "info": {
            "title": "meshplane management API",
            "description": "The NetBird-compatible REST API meshplane-server implements: "
            "the operations of the reference contract it serves, with their shapes.",
            "version": reference["info"]["version"],
        },
        "tags": [t for t in reference.get("tags", []) if t["name"] in tags_of(paths)]
        + [{"name": "OpenAPI", "description": "This document."}],
        "security": [{"BearerAuth": []}, {"TokenAuth": []}],
        "paths": paths,
        "components": {k: dict(sorted(v.items())) for k, v in sorted(components.items())},
    }


def tags_of(paths):
    return {tag for item in paths.values() for op in item.values()
            if isinstance(op, dict) for tag in op.get("tags", [])}


def activity_codes():
    """The audit `activity_code`s the core records, from its activity table."""
    table = (REPO / "core/src/model/event.rs").read_text(encoding="utf-8")
    return re.findall(r'^\s*[A-Z_]+ = \d+, "([^"]+)"', table, re.MULTILINE)


def add_activity_codes(components):
    """The reference's `Event.activity_code` enum misses the codes meshplane
    adds (SEMANTICS.md: 111-115); list every code the core can record."""
    enum = components["schemas"]["Event"]["properties"]["activity_code"]["enum"]
    enum.extend(code for code in activity_codes() if code not in enum)


def correct_resource_type(components):
    """The reference writes `ResourceType` as allOf(NetworkResourceType,
    enum [peer]), which no value satisfies; its Go code (and we) read it as
    either: host, subnet, domain or peer."""
    schemas = components["schemas"]
    if "ResourceType" in schemas and "allOf" in schemas["ResourceType"]:
        schemas["ResourceType"]["anyOf"] = schemas["ResourceType"].pop("allOf")


def mark_ephemeral_services(components):
    """meshplane's services are the expose sessions of `meshplane expose`:
    each carries where it comes from, which the reference does not have."""
    service = components["schemas"]["Service"]
    service["properties"]["source"] = {
        "type": "string",
        "enum": ["ephemeral"],
        "description": "Where the service comes from: `ephemeral` for a session of "
        "`meshplane expose` (CLI), which exists only while the command runs and its "
        "session is renewed, and cannot be edited through the API.",
        "example": "ephemeral",
    }
    service["properties"]["source_peer"] = {
        "type": "string",
        "description": "The id of the peer whose `meshplane expose` session the "
        "service is (for `ephemeral` services).",
        "example": "chacbco6lnnbn6cg5s90",
    }


def correct_city_list(paths):
    """The reference describes the cities of a country as one `City`; its
    Go code (and we) answer the list of them its summary names. Its path
    parameter is a country code, not a `Country` object."""
    op = paths["/api/locations/countries/{country}/cities"]["get"]
    for param in op["parameters"]:
        if param["name"] == "country":
            param["schema"] = {"$ref": "#/components/schemas/CountryCode"}
    op["responses"]["200"]["content"]["application/json"]["schema"] = {
        "type": "array",
        "items": {"$ref": "#/components/schemas/City"},
    }


def correct_domain_creation(paths):
    """The reference answers a domain's creation with a `Service`; the
    created `ReverseProxyDomain` is what its Go code (and we) send."""
    post = paths["/api/reverse-proxies/domains"]["post"]
    post["responses"]["200"] = {
        "description": "Custom domain created",
        "content": {
            "application/json": {
                "schema": {"$ref": "#/components/schemas/ReverseProxyDomain"}
            }
        },
    }


def unserved(reference):
    """The reference's operations that SERVED leaves out."""
    return sorted(
        f"{method} {path}"
        for path, item in reference["paths"].items()
        for method in item
        if method in HTTP_METHODS and method not in SERVED.get(path, [])
    )


def main():
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO.parent / "shared/reference/netbird-openapi.yml"
    target = Path(sys.argv[2]) if len(sys.argv) > 2 else HERE
    with open(source, encoding="utf-8") as f:
        reference = yaml.load(f, Loader=Loader)
    document = build(reference)
    (target / "openapi.json").write_text(
        json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    (target / "unserved.txt").write_text("".join(f"{op}\n" for op in unserved(reference)))


if __name__ == "__main__":
    main()
