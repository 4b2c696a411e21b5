#!/usr/bin/env python3
"""Checks what `kubectl kustomize deploy/k8s/overlays/example` renders (run by scripts/check-k8s).

  check-k8s.py RENDERED.yaml MPP_CANCEL_BINARY

What it checks, on the rendered objects (not on the sources):
- every object the kit promises is there (Deployment, migration Job, both Services,
  NetworkPolicy, PodDisruptionBudget, ServiceMonitor, PrometheusRule, ConfigMaps);
- the pods run as non-root with a read-only root filesystem, no privilege escalation, no
  capabilities, with requests and limits;
- every setting the service needs is in the environment, secrets only as files, and every file
  a setting names is mounted from a Secret (secrets) or a ConfigMap (public keys) with that key;
- the listen ports match the container ports, the probes and the ServiceMonitor point at routes
  the internal listener serves (read from src/http/internal.rs), the internal port is reachable
  only from the namespace (and Prometheus), and the public Service carries only the public port;
- terminationGracePeriodSeconds is longer than the drain (preStop + the longer of the HTTP grace
  in src/app.rs and the refund engine's batch, from src/engine/mod.rs and the settings);
- the PrometheusRule holds exactly deploy/prometheus/alerts.yaml;
- the configuration passes the service's own start checks: the binary's `check-config` runs
  against the rendered environment, with the mounted files replaced by generated stand-ins.

Then it breaks the render in several ways and requires each break to be caught, so that the
checks are known to bite.
"""

import copy
import math
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Settings the rendered environment must give (APP_ENV=production fails closed without them).
REQUIRED_ENV = [
    "APP_ENV",
    "MPP_CANCEL__SERVER__LISTEN",
    "MPP_CANCEL__INTERNAL__LISTEN",
    "MPP_CANCEL__WALLET__KIND",
    "MPP_CANCEL__ALIPAYPLUS__PSP_ID",
    "MPP_CANCEL__ALIPAYPLUS__CLIENT_ID",
    "MPP_CANCEL__ALIPAYPLUS__VERIFY_SIGNATURES",
]
# Secrets: only ever as files, each mounted from a Secret.
SECRET_FILES = {
    "DATABASE_URL_FILE": "the database URL",
    "MPP_CANCEL__INTERNAL__TOKEN_FILE": "the internal API token",
    "MPP_CANCEL__WALLET__TOKEN_FILE": "the wallet token",
    "MPP_CANCEL__ALIPAYPLUS__PRIVATE_KEY_FILE": "our private key",
}
# Names whose value is a secret: never a literal in a ConfigMap or an env value.
SECRET_VALUES = [
    "DATABASE_URL",
    "MPP_CANCEL__DATABASE__URL",
    "MPP_CANCEL__INTERNAL__TOKEN",
    "MPP_CANCEL__INTERNAL__READ_TOKEN",
    "MPP_CANCEL__WALLET__TOKEN",
    "MPP_CANCEL__ALIPAYPLUS__PRIVATE_KEY",
]
PUBLIC_KEY_PREFIX = "MPP_CANCEL__ALIPAYPLUS__PUBLIC_KEYS__"


def read(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return f.read()


def internal_routes():
    """The unguarded routes of the internal listener, as src/http/internal.rs mounts them."""
    source = read("src/http/internal.rs")
    body = source.split("pub fn configure", 1)[1].split("web::scope", 1)[0]
    return set(re.findall(r'(?:\.route|\bresource)\("(/[^"]*)"', body))


def rust_const(path, name):
    m = re.search(rf"const {name}: [^=]+= ([^;]+);", read(path))
    if not m:
        raise SystemExit(f"check-k8s: {name} not found in {path}")
    value = m.group(1).strip()
    secs = re.fullmatch(r"Duration::from_secs\((\d+)\)", value)
    return float(secs.group(1)) if secs else float(value)


def default_setting(section, key):
    """A setting's default, from config/default.toml (the image ships it as its config dir)."""
    text = read("config/default.toml")
    part = text.split(f"[{section}]", 1)[1].split("\n[", 1)[0]
    m = re.search(rf"^{key}\s*=\s*(\S+)", part, re.M)
    return m.group(1).strip('"') if m else None


def objects(docs, kind):
    return [d for d in docs if d and d.get("kind") == kind]


def labels(obj):
    return (obj.get("metadata") or {}).get("labels") or {}


def selects(selector, pod_labels):
    return all(pod_labels.get(k) == v for k, v in (selector or {}).items())


class Check:
    def __init__(self, docs, binary):
        self.docs = docs
        self.binary = binary
        self.errors = []

    def need(self, condition, message):
        if not condition:
            self.errors.append(message)
        return condition

    # -- the pieces ------------------------------------------------------------------------

    def one(self, kind, **want_labels):
        found = [o for o in objects(self.docs, kind) if selects(want_labels, labels(o))]
        self.need(len(found) == 1, f"expected one {kind} {want_labels or ''}, found {len(found)}")
        return found[0] if found else None

    def env_of(self, container):
        """The container's environment: envFrom ConfigMaps, then env (literal values only)."""
        env = {}
        config_maps = {o["metadata"]["name"]: o for o in objects(self.docs, "ConfigMap")}
        for source in container.get("envFrom", []):
            ref = source.get("configMapRef")
            if self.need(ref is not None, "envFrom other than a ConfigMap"):
                cm = config_maps.get(ref["name"])
                if self.need(cm is not None, f"envFrom ConfigMap {ref['name']} is not rendered"):
                    env.update(cm.get("data") or {})
        for var in container.get("env", []):
            if "value" in var:
                env[var["name"]] = var["value"]
            else:
                env[var["name"]] = None  # from a reference: present, value unknown
        return env

    def mounted_file(self, pod, container, path, want_kind):
        """The (volume, key) that provides `path`, if a `want_kind` volume mounted there does."""
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for mount in container.get("volumeMounts", []):
            base = mount["mountPath"].rstrip("/") + "/"
            if not path.startswith(base):
                continue
            rel = path[len(base):]
            volume = volumes.get(mount["name"], {})
            source = volume.get("secret") if want_kind == "secret" else volume.get("configMap")
            if source is None:
                continue
            items = source.get("items")
            if items is None:
                return volume, rel
            for item in items:
                if item["path"] == rel:
                    return volume, item["key"]
        return None

    def container_port(self, container, port):
        for p in container.get("ports", []):
            if port in (p.get("name"), p.get("containerPort")):
                return p["containerPort"]
        return None

    def pod_checks(self, what, pod, container, deployment):
        sc = pod.get("securityContext") or {}
        csc = container.get("securityContext") or {}
        self.need(sc.get("runAsNonRoot") is True, f"{what}: runAsNonRoot is not true")
        self.need(sc.get("runAsUser", 0) != 0, f"{what}: runAsUser is root")
        self.need(csc.get("readOnlyRootFilesystem") is True, f"{what}: root filesystem not read-only")
        self.need(csc.get("allowPrivilegeEscalation") is False, f"{what}: privilege escalation allowed")
        self.need("ALL" in ((csc.get("capabilities") or {}).get("drop") or []),
                  f"{what}: capabilities not dropped")
        res = container.get("resources") or {}
        for part in ("requests", "limits"):
            for name in ("cpu", "memory"):
                self.need(name in (res.get(part) or {}), f"{what}: no {part}.{name}")
        image = container.get("image", "")
        self.need(":" in image or "@" in image, f"{what}: image {image!r} has no tag or digest")
        self.need(pod.get("automountServiceAccountToken") is False,
                  f"{what}: a Kubernetes API token is mounted")

        env = self.env_of(container)
        for name in REQUIRED_ENV:
            self.need(env.get(name), f"{what}: {name} is not set")
        self.need(env.get("APP_ENV") != "local", f"{what}: APP_ENV=local in a deployment")
        self.need(env.get("MPP_CANCEL__ALIPAYPLUS__VERIFY_SIGNATURES") == "true",
                  f"{what}: signatures are not verified")
        for name in SECRET_VALUES:
            self.need(name not in env, f"{what}: {name} is given as a value; use the file setting")
        files = dict(SECRET_FILES)
        if env.get("MPP_CANCEL__WALLET__KIND") != "http":
            files.pop("MPP_CANCEL__WALLET__TOKEN_FILE")
        else:
            self.need(env.get("MPP_CANCEL__WALLET__BASE_URL"), f"{what}: wallet.base_url is not set")
        needed = []  # (env name, path, volume kind, key)
        for name, meaning in files.items():
            path = env.get(name)
            if not self.need(path, f"{what}: {name} ({meaning}) is not set"):
                continue
            found = self.mounted_file(pod, container, path, "secret")
            if self.need(found, f"{what}: {name}={path} is not a file mounted from a Secret"):
                needed.append((name, path, "secret", found))
        public_keys = [n for n in env if n.startswith(PUBLIC_KEY_PREFIX)]
        self.need(public_keys, f"{what}: no Alipay+ public key (alipayplus.public_keys)")
        for name in public_keys:
            value = env[name] or ""
            if value.startswith("file:"):
                path = value[len("file:"):]
                found = self.mounted_file(pod, container, path, "configMap") or \
                    self.mounted_file(pod, container, path, "secret")
                if self.need(found, f"{what}: {name} names {path}, which nothing mounts"):
                    needed.append((name, path, "configMap", found))
        return env, needed

    def listen_port(self, env, name):
        value = env.get(name) or ""
        m = re.search(r":(\d+)$", value)
        return int(m.group(1)) if m else None

    # -- the whole render --------------------------------------------------------------------

    def run(self):
        deployment = self.one("Deployment")
        job = next((j for j in objects(self.docs, "Job")
                    if labels(j).get("app.kubernetes.io/component") == "migration"), None)
        self.need(job is not None, "no migration Job (label app.kubernetes.io/component=migration)")
        for kind in ("NetworkPolicy", "PodDisruptionBudget", "ServiceMonitor", "PrometheusRule"):
            self.one(kind)
        public_svc = self.one("Service", **{"app.kubernetes.io/component": "public"})
        internal_svc = self.one("Service", **{"app.kubernetes.io/component": "internal"})
        if deployment is None:
            return self.errors
        pod = deployment["spec"]["template"]["spec"]
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        self.need(selects(deployment["spec"]["selector"]["matchLabels"], pod_labels),
                  "the Deployment's selector does not match its pods")
        containers = pod.get("containers", [])
        self.need(len(containers) == 1, "the Deployment runs other containers than mpp-cancel")
        container = containers[0]
        self.need(container.get("args") == ["serve"], "the Deployment does not run `serve`")
        env, needed = self.pod_checks("Deployment", pod, container, deployment)
        self.env, self.needed = env, needed

        # Ports, probes, routes.
        routes = internal_routes()
        internal = self.listen_port(env, "MPP_CANCEL__INTERNAL__LISTEN")
        public = self.listen_port(env, "MPP_CANCEL__SERVER__LISTEN")
        self.need(internal and self.container_port(container, "internal") == internal,
                  f"internal.listen port {internal} is not the container port named internal")
        self.need(public and self.container_port(container, "public") == public,
                  f"server.listen port {public} is not the container port named public")
        for listen in ("MPP_CANCEL__INTERNAL__LISTEN", "MPP_CANCEL__SERVER__LISTEN"):
            self.need((env.get(listen) or "").startswith("0.0.0.0:"),
                      f"{listen} does not listen on the pod's address (0.0.0.0)")
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz"),
                            ("startupProbe", "/healthz")):
            get = (container.get(probe) or {}).get("httpGet")
            if not self.need(get, f"no {probe} over HTTP"):
                continue
            self.need(get.get("path") == path, f"{probe} asks {get.get('path')}, not {path}")
            self.need(get.get("path") in routes,
                      f"{probe} path {get.get('path')} is not a route of the internal listener")
            self.need(self.container_port(container, get.get("port")) == internal,
                      f"{probe} does not probe the internal port")

        # Drain: the grace must outlast preStop + the longer of the HTTP grace and one batch.
        grace = pod.get("terminationGracePeriodSeconds", 30)
        pre_stop = 0
        command = (((container.get("lifecycle") or {}).get("preStop") or {}).get("exec") or {}).get("command") or []
        if len(command) == 2 and command[0] == "sleep":
            pre_stop = float(command[1])
        http_grace = rust_const("src/app.rs", "SHUTDOWN_GRACE_SECONDS")
        calls = rust_const("src/engine/mod.rs", "CALLS_PER_STEP")
        margin = rust_const("src/engine/mod.rs", "LEASE_MARGIN")
        per_group = rust_const("src/engine/mod.rs", "WALLET_CALLS_PER_WORKER")
        batch = float(env.get("MPP_CANCEL__REFUNDS__BATCH_SIZE") or default_setting("refunds", "batch_size"))
        timeout_s = float(env.get("MPP_CANCEL__WALLET__TIMEOUT_MS") or default_setting("wallet", "timeout_ms")) / 1000
        engine = math.ceil(batch / per_group) * (calls * timeout_s + margin)
        drain = pre_stop + max(http_grace, engine)
        self.drain = drain
        self.need(grace > drain, f"terminationGracePeriodSeconds {grace} is not longer than the drain ({drain:.0f} s)")

        # Services: the public one carries the public port only; the internal one stays inside.
        if public_svc:
            self.need(selects(public_svc["spec"]["selector"], pod_labels), "the public Service selects no pod")
            for port in public_svc["spec"]["ports"]:
                self.need(self.container_port(container, port["targetPort"]) == public,
                          f"the public Service exposes port {port['targetPort']}, not the public port")
        if internal_svc:
            self.need(internal_svc["spec"].get("type", "ClusterIP") == "ClusterIP",
                      "the internal Service is reachable from outside the cluster")
            self.need(selects(internal_svc["spec"]["selector"], pod_labels), "the internal Service selects no pod")
        for svc in objects(self.docs, "Service"):
            if svc is internal_svc:
                continue
            for port in svc["spec"]["ports"]:
                self.need(self.container_port(container, port.get("targetPort")) != internal,
                          f"Service {svc['metadata']['name']} exposes the internal port")

        # NetworkPolicy: the internal port only from this namespace's pods (and Prometheus).
        policy = next(iter(objects(self.docs, "NetworkPolicy")), None)
        if policy:
            spec = policy["spec"]
            self.need(selects(spec["podSelector"].get("matchLabels"), pod_labels),
                      "the NetworkPolicy does not select the service's pods")
            self.need("Ingress" in spec.get("policyTypes", []), "the NetworkPolicy does not limit ingress")
            for rule in spec.get("ingress", []):
                ports = rule.get("ports")
                reaches_internal = ports is None or any(
                    self.container_port(container, p.get("port")) == internal for p in ports)
                if not reaches_internal:
                    continue
                peers = rule.get("from")
                if not self.need(peers, "the internal port is open to every source"):
                    continue
                for peer in peers:
                    self.need("ipBlock" not in peer, "the internal port is open to an ipBlock")
                    if "namespaceSelector" in peer:
                        self.need(peer.get("podSelector", {}).get("matchLabels") and
                                  peer["namespaceSelector"].get("matchLabels"),
                                  "the internal port is open to whole other namespaces")

        # PodDisruptionBudget: selects the pods and lets a drain proceed.
        pdb = next(iter(objects(self.docs, "PodDisruptionBudget")), None)
        if pdb:
            self.need(selects(pdb["spec"]["selector"]["matchLabels"], pod_labels),
                      "the PodDisruptionBudget selects no pod")
            replicas = deployment["spec"].get("replicas", 1)
            self.need("maxUnavailable" in pdb["spec"] or pdb["spec"].get("minAvailable", 0) < replicas,
                      "the PodDisruptionBudget blocks every voluntary eviction")
            self.need(replicas >= 2, "fewer than 2 replicas: a disruption stops the service")

        # ServiceMonitor: scrapes /metrics on the internal Service.
        monitor = next(iter(objects(self.docs, "ServiceMonitor")), None)
        if monitor and internal_svc:
            self.need(selects(monitor["spec"]["selector"]["matchLabels"], labels(internal_svc)),
                      "the ServiceMonitor does not select the internal Service")
            for endpoint in monitor["spec"]["endpoints"]:
                self.need(endpoint.get("port") in [p["name"] for p in internal_svc["spec"]["ports"]],
                          "the ServiceMonitor scrapes another port than the internal one")
                self.need(endpoint.get("path") in routes and endpoint.get("path") == "/metrics",
                          "the ServiceMonitor scrapes a path the internal listener does not serve")

        # PrometheusRule: exactly the rule file.
        rule = next(iter(objects(self.docs, "PrometheusRule")), None)
        if rule:
            alerts = yaml.safe_load(read("deploy/prometheus/alerts.yaml"))
            self.need(rule["spec"] == alerts,
                      "the PrometheusRule differs from deploy/prometheus/alerts.yaml "
                      "(regenerate: scripts/check-k8s --write)")

        # The migration Job: `migrate`, with the same settings and files as the service.
        if job:
            jpod = job["spec"]["template"]["spec"]
            jcontainer = jpod["containers"][0]
            self.need(jcontainer.get("args") == ["migrate"], "the migration Job does not run `migrate`")
            self.need(jpod.get("restartPolicy") == "Never", "the migration Job restarts in place")
            jenv, _ = self.pod_checks("migration Job", jpod, jcontainer, None)
            self.need(jenv == env, "the migration Job's settings differ from the service's")
            self.need(jcontainer.get("image") == container.get("image"),
                      "the migration Job runs another image than the service")
        return self.errors

    # -- the service's own start checks ----------------------------------------------------

    def check_config(self):
        """Runs `mpp-cancel check-config` on the rendered environment; files are stand-ins."""
        if self.errors:
            return self.errors
        config_maps = {o["metadata"]["name"]: o for o in objects(self.docs, "ConfigMap")}
        root = tempfile.mkdtemp(prefix="check-k8s-")
        try:
            keys = os.path.join(root, "keys")
            base_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "APP_ENV": "local",
                        "MPP_CANCEL__WALLET__KIND": "demo"}
            subprocess.run([self.binary, "--config-dir", "/nonexistent", "keys", "generate",
                            "--out-dir", keys], env=base_env, check=True, capture_output=True)
            stand_ins = {
                "DATABASE_URL_FILE": "postgres://mpp_cancel:stand-in@db.invalid:5432/mpp_cancel\n",
                "MPP_CANCEL__INTERNAL__TOKEN_FILE": secrets.token_hex(24) + "\n",
                "MPP_CANCEL__WALLET__TOKEN_FILE": secrets.token_hex(24) + "\n",
                "MPP_CANCEL__ALIPAYPLUS__PRIVATE_KEY_FILE": read_file(os.path.join(keys, "private_key.pem")),
            }
            env = {"PATH": base_env["PATH"]}
            for name, value in self.env.items():
                env[name] = relocate(value, root) if value else value
            for name, path, kind, (volume, key) in self.needed:
                if kind == "configMap":
                    cm = config_maps.get(volume["configMap"]["name"], {})
                    content = (cm.get("data") or {}).get(key)
                    if not self.need(content, f"ConfigMap {volume['configMap']['name']} has no key {key}"):
                        continue
                else:
                    content = stand_ins[name]
                target = root + path
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with open(target, "w", encoding="utf-8") as f:
                    f.write(content)
            # The image's config dir: /etc/mpp-cancel holds config/default.toml only.
            config_dir = os.path.join(root, "etc-mpp-cancel")
            os.makedirs(config_dir)
            shutil.copy(os.path.join(ROOT, "config/default.toml"), config_dir)
            out = subprocess.run([self.binary, "--config-dir", config_dir] + config_check(self.binary, root),
                                 env=env, capture_output=True, text=True, timeout=60)
            self.check_config_output = out.stdout + out.stderr
            self.need(out.returncode == 0,
                      "the rendered configuration fails the service's start checks: "
                      + (out.stderr.strip() or out.stdout.strip()))
        finally:
            shutil.rmtree(root, ignore_errors=True)
        return self.errors


def config_check(binary, root):
    """The subcommand that loads and checks the configuration without a database: `check-config`
    where the binary has it, else `keys generate` (which loads and validates the settings
    first, then only writes a key pair)."""
    help_text = subprocess.run([binary, "help"], capture_output=True, text=True).stdout
    if re.search(r"^\s+check-config\b", help_text, re.M):
        return ["check-config"]
    if not getattr(config_check, "warned", False):
        print("check-k8s: this binary has no check-config: the settings are loaded and "
              "validated through `keys generate` instead", file=sys.stderr)
        config_check.warned = True
    return ["keys", "generate", "--out-dir", os.path.join(root, "unused-keys")]


def read_file(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def relocate(value, root):
    """A setting's value with its absolute file paths moved under `root`."""
    if value.startswith("file:/"):
        return "file:" + root + value[len("file:"):]
    if value.startswith("/"):
        return root + value
    return value


def container_of(docs, kind):
    return objects(docs, kind)[0]["spec"]["template"]["spec"]["containers"][0]


def breakages():
    """Ways to break the render, each with a word the failure must mention."""
    def deployment(docs):
        return objects(docs, "Deployment")[0]

    def env_cm(docs):
        return next(o for o in objects(docs, "ConfigMap") if "MPP_CANCEL__WALLET__KIND" in (o.get("data") or {}))

    def drop_item(docs, key):
        for v in deployment(docs)["spec"]["template"]["spec"]["volumes"]:
            if "secret" in v:
                v["secret"]["items"] = [i for i in v["secret"]["items"] if i["key"] != key]

    def set_env(docs, name, value):
        env_cm(docs)["data"][name] = value

    def del_env(docs, name):
        env_cm(docs)["data"].pop(name)

    def open_internal(docs):
        rule = objects(docs, "NetworkPolicy")[0]["spec"]["ingress"][1]
        rule["from"].append({"namespaceSelector": {}})

    def writable_root(docs):
        container_of(docs, "Deployment")["securityContext"]["readOnlyRootFilesystem"] = False

    def probe(docs):
        container_of(docs, "Deployment")["readinessProbe"]["httpGet"]["path"] = "/ready"

    def short_grace(docs):
        deployment(docs)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 30

    def rule(docs):
        objects(docs, "PrometheusRule")[0]["spec"]["groups"][0]["rules"].pop()

    def bad_cutoff(docs):
        set_env(docs, "MPP_CANCEL__CANCEL__CUTOFF", "25:99")

    return [
        ("wallet token not mounted", lambda d: drop_item(d, "wallet-token"), "WALLET__TOKEN_FILE"),
        ("private key not mounted", lambda d: drop_item(d, "private-key.pem"), "PRIVATE_KEY_FILE"),
        ("psp id missing", lambda d: del_env(d, "MPP_CANCEL__ALIPAYPLUS__PSP_ID"), "PSP_ID"),
        ("token inline", lambda d: set_env(d, "MPP_CANCEL__INTERNAL__TOKEN", "x" * 40), "INTERNAL__TOKEN"),
        ("internal port open", open_internal, "whole other namespaces"),
        ("writable root", writable_root, "read-only"),
        ("probe on a missing route", probe, "/ready"),
        ("grace shorter than the drain", short_grace, "drain"),
        ("rules edited", rule, "PrometheusRule"),
        ("configuration the service refuses", bad_cutoff, "start checks"),
    ]


def main():
    rendered, binary = sys.argv[1], sys.argv[2]
    with open(rendered, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    check = Check(docs, binary)
    check.run()
    check.check_config()
    if check.errors:
        for e in check.errors:
            print(f"check-k8s: FAIL {e}", file=sys.stderr)
        return 1
    print(f"check-k8s: {len(docs)} objects rendered; settings, files, probes, ports, policy, "
          f"drain ({check.drain:.0f} s < grace), rules and check-config pass")
    missed = 0
    for name, breakage, word in breakages():
        broken = copy.deepcopy(docs)
        breakage(broken)
        bad = Check(broken, binary)
        bad.run()
        bad.check_config()
        if any(word in e for e in bad.errors):
            print(f"check-k8s: caught: {name}")
        else:
            missed += 1
            print(f"check-k8s: FAIL a render with {name} passed ({bad.errors})", file=sys.stderr)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
