"""The fields the operators document for the custom resources we ship, as a
small schema per kind, and a checker.

Their CRDs are not in the Kubernetes schemas, and a cluster is not at hand,
so each kind's fields are written down here from its operator's API
reference (the version named beside each), as far as our manifests use
them: every field we set must be one the operator documents, of the
documented type, with a documented value where the field is an enumeration.
Where a field embeds a Kubernetes type (resources, affinity, a pod template,
a label selector), that part is validated against the Kubernetes schema
itself (kubernetes-validate's definitions).

What this cannot see: the operators' own admission rules beyond the schema
(CEL validations, webhooks), and fields added by operator versions newer
than the references below (a field missing here fails the test: add it with
its source when you use it).
"""
from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from importlib import resources

import jsonschema
import referencing
import referencing.jsonschema

KUBERNETES_SCHEMA = "v1.30.0-local-strict"


# ------------------------------------------------------------------ the DSL

@dataclass(frozen=True)
class Obj:
    fields: dict
    required: tuple = ()


@dataclass(frozen=True)
class List:
    item: object
    min_items: int = 0


@dataclass(frozen=True)
class Enum:
    values: tuple


@dataclass(frozen=True)
class Str:
    pattern: str | None = None
    max_length: int | None = None


@dataclass(frozen=True)
class Int:
    minimum: int | None = None
    allowed: tuple = ()


@dataclass(frozen=True)
class K8s:
    """A Kubernetes API type, validated against its OpenAPI schema."""
    definition: str


@dataclass(frozen=True)
class Opaque:
    """Documented, but its inside is the operator's business (we do not set it)."""
    why: str = ""


@dataclass(frozen=True)
class Map:
    value: object = field(default_factory=Str)


BOOL = "bool"
QUANTITY = Str(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?$")
# Prometheus durations, as the Prometheus Operator's CRDs pattern them
DURATION = Str(r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$")
GATEWAY_DURATION = Str(r"^([0-9]{1,5}(h|m|s|ms)){1,4}$")
NAME = Str(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", 253)
LABELS = Map()
META = Obj({"labels": LABELS, "annotations": LABELS})
EMBEDDED_META = Obj({"name": NAME, "namespace": NAME, "labels": LABELS, "annotations": LABELS})

# ------------------------------------------------------- RabbitMQ operator
# rabbitmq.com/v1beta1 RabbitmqCluster: the Cluster Operator's API reference
# (docs/api/rabbitmq.com.ref.asciidoc of rabbitmq/cluster-operator) and
# api/v1beta1/rabbitmqcluster_types.go.
RABBITMQ_CLUSTER = Obj({
    # "Only 1, 3, 5 replicas clusters are tested."
    "replicas": Int(minimum=0, allowed=(1, 3, 5)),
    "image": Str(),
    "imagePullSecrets": List(K8s("io.k8s.api.core.v1.LocalObjectReference")),
    "service": Obj({"type": Enum(("ClusterIP", "LoadBalancer", "NodePort")), "annotations": LABELS}),
    "persistence": Obj({"storageClassName": Str(), "storage": QUANTITY}),
    "resources": K8s("io.k8s.api.core.v1.ResourceRequirements"),
    "affinity": K8s("io.k8s.api.core.v1.Affinity"),
    "tolerations": List(K8s("io.k8s.api.core.v1.Toleration")),
    "rabbitmq": Obj({
        "additionalPlugins": List(Str(r"^\w+$", 100)),
        "additionalConfig": Str(max_length=2000),
        "advancedConfig": Str(max_length=100000),
        "envConfig": Str(max_length=100000),
        "erlangInetConfig": Str(max_length=2000),
    }),
    "tls": Obj({"secretName": Str(), "caSecretName": Str(), "disableNonTLSListeners": BOOL}),
    "override": Obj({
        "statefulSet": Obj({
            "metadata": META,
            "spec": Obj({
                "replicas": Int(minimum=0),
                "selector": K8s("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"),
                "template": Obj({"metadata": EMBEDDED_META, "spec": K8s("io.k8s.api.core.v1.PodSpec")}),
                "volumeClaimTemplates": List(Obj({"metadata": EMBEDDED_META,
                                                  "spec": K8s("io.k8s.api.core.v1.PersistentVolumeClaimSpec")})),
                "serviceName": Str(),
                "podManagementPolicy": Enum(("OrderedReady", "Parallel")),
                "updateStrategy": K8s("io.k8s.api.apps.v1.StatefulSetUpdateStrategy"),
            }),
        }),
        "service": Obj({"metadata": META, "spec": K8s("io.k8s.api.core.v1.ServiceSpec")}),
    }),
    "skipPostDeploySteps": BOOL,
    "terminationGracePeriodSeconds": Int(minimum=0),
    "delayStartSeconds": Int(minimum=0),
    "secretBackend": Opaque("Vault or an external Secret for the default user"),
    "autoEnableAllFeatureFlags": BOOL,
})

# --------------------------------------------------------- CloudNativePG
# postgresql.cnpg.io/v1 Cluster: CloudNativePG's API reference
# (docs/src/cloudnative-pg.v1.md, ClusterSpec and the types below it).
STORAGE = Obj({"storageClass": Str(), "size": QUANTITY, "resizeInUseVolumes": BOOL,
               "pvcTemplate": K8s("io.k8s.api.core.v1.PersistentVolumeClaimSpec")})
CNPG_CLUSTER = Obj({
    "description": Str(),
    "inheritedMetadata": Obj({"labels": LABELS, "annotations": LABELS}),
    "imageName": Str(),
    "imageCatalogRef": Opaque(),
    "imagePullPolicy": Enum(("Always", "Never", "IfNotPresent")),
    "schedulerName": Str(),
    "postgresUID": Int(), "postgresGID": Int(),
    "instances": Int(minimum=1),
    "minSyncReplicas": Int(minimum=0), "maxSyncReplicas": Int(minimum=0),
    "postgresql": Obj({
        "parameters": Map(),
        "synchronous": Obj({"method": Enum(("any", "first")), "number": Int(minimum=1),
                            "maxStandbyNamesFromCluster": Int(minimum=0),
                            "standbyNamesPre": List(Str()), "standbyNamesPost": List(Str()),
                            "dataDurability": Enum(("required", "preferred"))}, required=("method", "number")),
        "pg_hba": List(Str()), "pg_ident": List(Str()),
        "shared_preload_libraries": List(Str()),
        "ldap": Opaque(), "promotionTimeout": Int(), "enableAlterSystem": BOOL,
        "syncReplicaElectionConstraint": Opaque(), "extensions": Opaque(),
    }),
    "replicationSlots": Opaque(),
    "bootstrap": Obj({
        "initdb": Obj({
            "database": Str(), "owner": Str(), "secret": Obj({"name": Str()}),
            "options": List(Str()), "dataChecksums": BOOL, "encoding": Str(),
            "localeCollate": Str(), "localeCType": Str(), "locale": Str(), "localeProvider": Str(),
            "icuLocale": Str(), "icuRules": Str(), "builtinLocale": Str(), "walSegmentSize": Int(),
            "postInitSQL": List(Str()), "postInitApplicationSQL": List(Str()),
            "postInitTemplateSQL": List(Str()), "import": Opaque(),
            "postInitApplicationSQLRefs": Opaque(), "postInitTemplateSQLRefs": Opaque(),
            "postInitSQLRefs": Opaque(),
        }),
        "recovery": Opaque(), "pg_basebackup": Opaque(),
    }),
    "replica": Opaque(),
    "superuserSecret": Obj({"name": Str()}),
    "enableSuperuserAccess": BOOL,
    "certificates": Opaque(),
    "imagePullSecrets": List(Obj({"name": Str()})),
    "storage": STORAGE,
    "serviceAccountTemplate": Opaque(),
    "walStorage": STORAGE,
    "ephemeralVolumeSource": K8s("io.k8s.api.core.v1.EphemeralVolumeSource"),
    "startDelay": Int(), "stopDelay": Int(), "smartShutdownTimeout": Int(),
    "switchoverDelay": Int(), "failoverDelay": Int(), "livenessProbeTimeout": Int(),
    "affinity": Obj({
        "enablePodAntiAffinity": BOOL, "topologyKey": Str(), "nodeSelector": Map(),
        "nodeAffinity": K8s("io.k8s.api.core.v1.NodeAffinity"),
        "tolerations": List(K8s("io.k8s.api.core.v1.Toleration")),
        "podAntiAffinityType": Enum(("preferred", "required")),
        "additionalPodAntiAffinity": K8s("io.k8s.api.core.v1.PodAntiAffinity"),
        "additionalPodAffinity": K8s("io.k8s.api.core.v1.PodAffinity"),
    }),
    "topologySpreadConstraints": List(K8s("io.k8s.api.core.v1.TopologySpreadConstraint")),
    "resources": K8s("io.k8s.api.core.v1.ResourceRequirements"),
    "ephemeralVolumesSizeLimit": Opaque(),
    "priorityClassName": Str(),
    "primaryUpdateStrategy": Enum(("unsupervised", "supervised")),
    "primaryUpdateMethod": Enum(("switchover", "restart")),
    "backup": Opaque("site-specific: object store or volume snapshots"),
    "nodeMaintenanceWindow": Opaque(),
    "monitoring": Opaque(),
    "externalClusters": Opaque(),
    "logLevel": Enum(("error", "warning", "info", "debug", "trace")),
    "projectedVolumeTemplate": K8s("io.k8s.api.core.v1.ProjectedVolumeSource"),
    "env": List(K8s("io.k8s.api.core.v1.EnvVar")),
    "envFrom": List(K8s("io.k8s.api.core.v1.EnvFromSource")),
    "managed": Opaque(),
    "seccompProfile": K8s("io.k8s.api.core.v1.SeccompProfile"),
    "tablespaces": Opaque(),
    "enablePDB": BOOL,
    "plugins": Opaque(),
    "probes": Opaque(),
}, required=("instances",))

# ---------------------------------------------------- Prometheus Operator
# monitoring.coreos.com/v1: the Prometheus Operator's API reference
# (ServiceMonitor, PodMonitor, PrometheusRule; Endpoint, PodMetricsEndpoint,
# RelabelConfig, RuleGroup, Rule).
RELABEL = Obj({
    "sourceLabels": List(Str(r"^[a-zA-Z_][a-zA-Z0-9_]*$")), "separator": Str(),
    "targetLabel": Str(), "regex": Str(), "modulus": Int(minimum=0), "replacement": Str(),
    "action": Enum(("replace", "Replace", "keep", "Keep", "drop", "Drop", "hashmod", "HashMod",
                    "labelmap", "LabelMap", "labeldrop", "LabelDrop", "labelkeep", "LabelKeep",
                    "lowercase", "Lowercase", "uppercase", "Uppercase", "keepequal", "KeepEqual",
                    "dropequal", "DropEqual")),
})
SCRAPE_COMMON = {
    "path": Str(), "scheme": Enum(("http", "https", "HTTP", "HTTPS")), "params": Map(List(Str())),
    "interval": DURATION, "scrapeTimeout": DURATION, "honorLabels": BOOL, "honorTimestamps": BOOL,
    "trackTimestampsStaleness": BOOL, "relabelings": List(RELABEL), "metricRelabelings": List(RELABEL),
    "tlsConfig": Opaque(), "authorization": Opaque(), "basicAuth": Opaque(), "oauth2": Opaque(),
    "followRedirects": BOOL, "enableHttp2": BOOL, "proxyUrl": Str(), "filterRunning": BOOL,
}
MONITOR_COMMON = {
    "selector": K8s("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"),
    "namespaceSelector": Obj({"any": BOOL, "matchNames": List(Str())}),
    "jobLabel": Str(), "podTargetLabels": List(Str()), "sampleLimit": Int(minimum=0),
    "targetLimit": Int(minimum=0), "labelLimit": Int(minimum=0), "labelNameLengthLimit": Int(minimum=0),
    "labelValueLengthLimit": Int(minimum=0), "keepDroppedTargets": Int(minimum=0),
    "attachMetadata": Opaque(), "scrapeProtocols": List(Str()), "fallbackScrapeProtocol": Str(),
    "bodySizeLimit": Str(), "scrapeClass": Str(),
}
SERVICE_MONITOR = Obj({
    **MONITOR_COMMON,
    "targetLabels": List(Str()),
    "endpoints": List(Obj({**SCRAPE_COMMON, "port": Str(), "targetPort": Opaque("int or string"),
                           "bearerTokenFile": Str(), "bearerTokenSecret": Opaque()}), min_items=1),
}, required=("selector",))
POD_MONITOR = Obj({
    **MONITOR_COMMON,
    "podMetricsEndpoints": List(Obj({**SCRAPE_COMMON, "port": Str(), "portNumber": Int(minimum=1),
                                     "targetPort": Opaque("int or string"),
                                     "bearerTokenSecret": Opaque()}), min_items=1),
}, required=("selector",))
PROMETHEUS_RULE = Obj({
    "groups": List(Obj({
        "name": Str(), "interval": DURATION, "query_offset": DURATION, "limit": Int(minimum=0),
        "partial_response_strategy": Str(), "labels": Map(),
        "rules": List(Obj({"alert": Str(), "record": Str(), "expr": Str(), "for": DURATION,
                           "keep_firing_for": DURATION, "labels": Map(), "annotations": Map()},
                          required=("expr",))),
    }, required=("name",)), min_items=1),
})

# -------------------------------------------------------------- Gateway API
# gateway.networking.k8s.io/v1: the Gateway API reference (standard channel,
# v1.1+: Gateway, HTTPRoute and GRPCRoute are v1 there).
PARENT_REF = Obj({"group": Str(), "kind": Str(), "namespace": NAME, "name": NAME,
                  "sectionName": NAME, "port": Int(minimum=1)}, required=("name",))
BACKEND_REF = Obj({"group": Str(), "kind": Str(), "name": NAME, "namespace": NAME,
                   "port": Int(minimum=1), "weight": Int(minimum=0), "filters": Opaque()}, required=("name",))
HOSTNAME = Str(r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$", 253)
GATEWAY = Obj({
    "gatewayClassName": NAME,
    "listeners": List(Obj({
        "name": NAME, "hostname": HOSTNAME, "port": Int(minimum=1),
        "protocol": Enum(("HTTP", "HTTPS", "TLS", "TCP", "UDP")),
        "tls": Obj({"mode": Enum(("Terminate", "Passthrough")),
                    "certificateRefs": List(Obj({"group": Str(), "kind": Str(), "name": NAME,
                                                 "namespace": NAME}, required=("name",))),
                    "frontendValidation": Opaque(), "options": Map()}),
        "allowedRoutes": Obj({"namespaces": Obj({"from": Enum(("All", "Same", "Selector")),
                                                 "selector": K8s("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector")}),
                              "kinds": List(Obj({"group": Str(), "kind": Str()}, required=("kind",)))}),
    }, required=("name", "port", "protocol")), min_items=1),
    "addresses": Opaque(), "infrastructure": Opaque(), "backendTLS": Opaque(),
}, required=("gatewayClassName", "listeners"))
HTTP_ROUTE = Obj({
    "parentRefs": List(PARENT_REF),
    "hostnames": List(HOSTNAME),
    "rules": List(Obj({
        "name": NAME,
        "matches": List(Obj({
            "path": Obj({"type": Enum(("Exact", "PathPrefix", "RegularExpression")), "value": Str()}),
            "headers": Opaque(), "queryParams": Opaque(),
            "method": Enum(("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")),
        })),
        "filters": Opaque(), "backendRefs": List(BACKEND_REF),
        "timeouts": Obj({"request": GATEWAY_DURATION, "backendRequest": GATEWAY_DURATION}),
        "retry": Opaque(), "sessionPersistence": Opaque(),
    })),
})
GRPC_ROUTE = Obj({
    "parentRefs": List(PARENT_REF),
    "hostnames": List(HOSTNAME),
    "rules": List(Obj({
        "name": NAME,
        "matches": List(Obj({
            "method": Obj({"type": Enum(("Exact", "RegularExpression")), "service": Str(), "method": Str()}),
            "headers": Opaque(),
        })),
        "filters": Opaque(), "backendRefs": List(BACKEND_REF), "sessionPersistence": Opaque(),
    })),
})

SCHEMAS = {
    ("rabbitmq.com/v1beta1", "RabbitmqCluster"): RABBITMQ_CLUSTER,
    ("postgresql.cnpg.io/v1", "Cluster"): CNPG_CLUSTER,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): SERVICE_MONITOR,
    ("monitoring.coreos.com/v1", "PodMonitor"): POD_MONITOR,
    ("monitoring.coreos.com/v1", "PrometheusRule"): PROMETHEUS_RULE,
    ("gateway.networking.k8s.io/v1", "Gateway"): GATEWAY,
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): HTTP_ROUTE,
    ("gateway.networking.k8s.io/v1", "GRPCRoute"): GRPC_ROUTE,
}


# ------------------------------------------------------------------ checker

@functools.lru_cache(maxsize=1)
def _definitions() -> dict:
    path = resources.files("kubernetes_validate") / "kubernetes-json-schema" / KUBERNETES_SCHEMA / "_definitions.json"
    return json.loads(path.read_text())


@functools.lru_cache(maxsize=None)
def _validator(definition: str) -> jsonschema.Draft202012Validator:
    defs = _definitions()
    uri = defs.get("$id", "_definitions.json")
    resource = referencing.Resource.from_contents(defs, default_specification=referencing.jsonschema.DRAFT202012)
    registry = referencing.Registry().with_resource(uri, resource)
    section = "$defs" if "$defs" in defs else "definitions"
    if definition not in defs[section]:
        raise KeyError(f"Kubernetes has no type {definition}")
    return jsonschema.Draft202012Validator({"$ref": f"{uri}#/{section}/{definition}"}, registry=registry)


def _validate_k8s(value, definition: str) -> list[str]:
    return [f"{'/'.join(str(p) for p in e.absolute_path)}: {e.message[:200]}"
            for e in _validator(definition).iter_errors(value)]


def check(value, schema, path: str = "spec") -> list[str]:
    """The problems of `value` against `schema`, each with its path."""
    errors: list[str] = []
    if isinstance(schema, Obj):
        if not isinstance(value, dict):
            return [f"{path}: expected an object, got {value!r}"]
        for key in schema.required:
            if key not in value:
                errors.append(f"{path}.{key}: required")
        for key, item in value.items():
            if key not in schema.fields:
                errors.append(f"{path}.{key}: not a documented field")
            else:
                errors.extend(check(item, schema.fields[key], f"{path}.{key}"))
    elif isinstance(schema, List):
        if not isinstance(value, list):
            return [f"{path}: expected a list"]
        if len(value) < schema.min_items:
            errors.append(f"{path}: at least {schema.min_items} item(s)")
        for i, item in enumerate(value):
            errors.extend(check(item, schema.item, f"{path}[{i}]"))
    elif isinstance(schema, Map):
        if not isinstance(value, dict):
            return [f"{path}: expected a map"]
        for key, item in value.items():
            errors.extend(check(item, schema.value, f"{path}[{key}]"))
    elif isinstance(schema, Enum):
        if value not in schema.values:
            errors.append(f"{path}: {value!r} is not one of {schema.values}")
    elif isinstance(schema, Str):
        if not isinstance(value, str):
            errors.append(f"{path}: expected a string, got {value!r}")
        else:
            if schema.pattern and not re.match(schema.pattern, value):
                errors.append(f"{path}: {value!r} does not match {schema.pattern}")
            if schema.max_length is not None and len(value) > schema.max_length:
                errors.append(f"{path}: longer than {schema.max_length}")
    elif isinstance(schema, Int):
        if not isinstance(value, int) or isinstance(value, bool):
            errors.append(f"{path}: expected an integer, got {value!r}")
        else:
            if schema.minimum is not None and value < schema.minimum:
                errors.append(f"{path}: below {schema.minimum}")
            if schema.allowed and value not in schema.allowed:
                errors.append(f"{path}: {value} is not one of {schema.allowed}")
    elif schema == BOOL:
        if not isinstance(value, bool):
            errors.append(f"{path}: expected true or false")
    elif isinstance(schema, K8s):
        errors.extend(f"{path} ({schema.definition}): {e}" for e in _validate_k8s(value, schema.definition))
    elif isinstance(schema, Opaque):
        pass
    else:  # pragma: no cover - a mistake in the tables above
        raise TypeError(f"unknown schema {schema!r}")
    return errors
