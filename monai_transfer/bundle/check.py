"""Lint a MONAI bundle: ``bundle check DIR`` prints one line per problem and exits non-zero when there is any.

The checks follow what MONAI and its model zoo verify before a bundle is published, run offline and without touching
the bundle (anything exported goes to a temporary directory):

* the files a model-zoo bundle ships (``LICENSE``, ``configs/metadata.json``, ``configs/inference.json``,
  ``configs/train.json``, ``configs/logging.conf``, ``docs/README.md``, ``models/model.pt`` unless ``large_files.yml``
  lists it) - ``ci/verify_bundle.py`` in the model zoo;
* every JSON file parses, has no duplicate keys and is written with a 4-space indent (the model zoo's style);
* the metadata validates against MONAI's schema (``monai.bundle.verify_metadata`` with the shipped copy of
  ``meta_schema_20240725.json`` instead of a download), its ``version`` has a ``changelog`` entry, it names
  ``monai_transfer`` among ``required_packages_version``, and ``network_data_format`` describes ``inputs.image`` and
  ``outputs.pred.channel_def`` (MONAI Label reads the label names from it);
* no absolute path in a config (paths derive from ``@bundle_root`` or ``@dataset_dir``), and no ``@`` reference to an
  id that does not exist;
* no file over 25 MB unless ``large_files.yml`` lists it (MONAI's ``download_large_files`` format), and that list is
  well formed;
* the properties MONAI's ``ConfigWorkflow.check_properties`` requires for ``workflow_type="train"`` and ``"infer"``,
  and the ids MONAI Label's bundle tasks read;
* ``network_def`` instantiates, ``models/model.pt`` loads into it strictly, ``monai.bundle.verify_net_in_out`` passes,
  and (``export=True``) ``monai.bundle.ckpt_export`` to TorchScript (scripted; traced when the network does not script;
  ONNX when neither works) computes what the eager network does.

Example:
    >>> problems = check_bundle("bundles/resnet10_ssl_cls")
    >>> print("\\n".join(map(str, problems)))
"""

from __future__ import annotations

import ast
import configparser
import contextlib
import hashlib
import json
import logging
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["BundleProblem", "check_bundle", "SCHEMA_FILE", "SCHEMA_MD5", "MAX_FILE_BYTES"]

SCHEMA_FILE = Path(__file__).parent / "schema" / "meta_schema_20240725.json"
SCHEMA_MD5 = "06954cad2cc5d3784e72077ac76f0fc8"
MAX_FILE_BYTES = 25 * 2**20  # the model zoo stores larger files elsewhere and lists them in large_files.yml

META = "configs/metadata.json"
TRAIN = "configs/train.json"
INFER = "configs/inference.json"
LOGGING = "configs/logging.conf"
MODEL = "models/model.pt"
OVERLAYS = ("configs/evaluate.json", "configs/multi_gpu_train.json")  # merged over train.json when run
REQUIRED_FILES = ("LICENSE", META, INFER, TRAIN, "docs/README.md", LOGGING)
LARGE_FILE_NAMES = ("large_files.yml", "large_files.yaml", "large_files.json")
LARGE_FILE_FIELDS = ("path", "url", "hash_val", "hash_type")
HASH_TYPES = ("md5", "sha1", "sha256", "sha512")  # monai.apps.utils.SUPPORTED_HASH_TYPES
# ids MONAI Label's bundle tasks read (monailabel/tasks/infer/bundle.py, monailabel/tasks/train/bundle.py)
MONAI_LABEL_INFER_IDS = ("network_def", "preprocessing", "inferer", "postprocessing")
# ids a pretraining bundle's train.json must have to run with python -m monai.bundle run on a user's data
PRETRAIN_IDS = ("bundle_root", "dataset_dir", "datalist", "device", "network_def", "train#trainer", "run")
MONAI_LABEL_TRAIN_IDS = ("run", "network", "train#trainer#max_epochs", "train#dataset#data", "validate#dataset#data")
NET_ID = "network_def"
ATOL = 1e-4
RTOL = 1e-4

_ABS_PATH = re.compile(r"^(/|~|[A-Za-z]:[\\/])")
_MONAI_LOGGERS = ("monai.bundle.scripts", "monai.bundle.workflows", "monai.bundle.config_parser")


@dataclass(frozen=True)
class BundleProblem:
    """One problem found in a bundle.

    Attributes:
        file: path relative to the bundle root, e.g. ``"configs/metadata.json"``.
        key: config id or JSON key (``#``-separated, e.g. ``"train#dataset#data"``); ``""`` when not applicable.
        message: what is wrong, starting with a phrase that names the check.
    """

    file: str
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.key}: {self.message}" if self.key else f"{self.file}: {self.message}"


def _load_json(text: str, duplicates: list[str]) -> Any:
    def hook(pairs: list[tuple[str, Any]]) -> dict:
        out: dict = {}
        for k, v in pairs:
            if k in out:
                duplicates.append(k)
            out[k] = v
        return out

    return json.loads(text, object_pairs_hook=hook)


def _walk(obj: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Yield ``(config id, value)`` for every leaf of a JSON structure (ids joined with ``#`` as MONAI does)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _walk(v, f"{prefix}#{k}" if prefix else str(k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _walk(v, f"{prefix}#{i}" if prefix else str(i))
    else:
        yield prefix, obj


def _has_id(config: Any, id: str) -> bool:
    """Whether a ``#``-separated id exists in a (possibly flat-keyed) config, as ``ConfigParser.__contains__``."""
    node = config
    for part in id.split("#") if id else []:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False
    return True


def _absolute_literals(expr: str) -> list[str]:
    """String literals in a ``$`` expression that start an absolute path.

    A literal appended to something else (``@bundle_root + '/models'``, an f-string after a field) is a relative suffix;
    any other literal that starts with ``/``, ``~`` or a drive is absolute - ``os.path.join(@bundle_root, '/x')``
    and ``Path(@bundle_root) / '/x'`` included, since both discard what comes before an absolute component.
    """
    code = re.sub(r"@[\w#]+", "_ref", expr)  # ids are not Python names
    try:
        tree = ast.parse(code, mode="exec")
    except SyntaxError:
        return [m for m in re.findall(r"""['"]([^'"]*)['"]""", expr) if _ABS_PATH.match(m)]
    parents: dict[int, ast.AST] = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[id(child)] = node
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str) and _ABS_PATH.match(node.value)):
            continue
        parent = parents.get(id(node))
        if isinstance(parent, ast.BinOp) and isinstance(parent.op, ast.Add) and parent.right is node:
            continue
        if isinstance(parent, ast.JoinedStr) and parent.values and parent.values[0] is not node:
            continue
        found.append(node.value)
    return found


def _normalize_refs(config: Any) -> None:
    """Spell every whole-string reference (``"@a#b"``) with MONAI's current separator, in place."""
    from monai.bundle.reference_resolver import ReferenceResolver

    items = config.items() if isinstance(config, dict) else enumerate(config) if isinstance(config, list) else ()
    for k, v in list(items):
        if isinstance(v, str) and v.startswith(ReferenceResolver.ref):
            config[k] = ReferenceResolver.normalize_id(v)
        else:
            _normalize_refs(v)


def _file_hash(path: Path, hash_type: str) -> str:
    h = hashlib.new(hash_type)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _short(text: Any, limit: int = 240) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _names(keys: list[str], n: int = 3) -> str:
    shown = ", ".join(keys[:n])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > n else "")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence MONAI's bundle loggers and warnings while MONAI's verifiers run; restore them after."""
    import monai.bundle  # noqa: F401 - MONAI's get_logger adds its handler only to loggers it creates first

    saved = [(lg, lg.level) for lg in map(logging.getLogger, _MONAI_LOGGERS)]
    for lg, _ in saved:
        lg.setLevel(logging.CRITICAL + 1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in saved:
            lg.setLevel(level)


@contextlib.contextmanager
def _on_sys_path(path: str) -> Iterator[None]:
    """Let ``_target_`` values import modules shipped in the bundle (``scripts.*``), as ``ConfigWorkflow.run`` does."""
    sys.path.insert(1, path)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(path)


class _Checker:
    def __init__(self, root: Path, export: bool, schema: str | None) -> None:
        self.root = root
        self.export = export
        self.schema = schema
        self.problems: list[BundleProblem] = []
        self.json: dict[str, Any] = {}  # parsed JSON files that passed parsing, by relative path
        self.large_files: set[str] = set()  # normalised relative paths listed in large_files.yml

    def add(self, file: str, key: str, message: str) -> None:
        # messages name files relative to the bundle, as ``file`` does
        message = message.replace(str(self.root) + os.sep, "").replace(str(self.root), ".")
        self.problems.append(BundleProblem(file, key, message))

    @contextlib.contextmanager
    def guard(self, file: str, what: str) -> Iterator[None]:
        """Turn an unexpected exception inside one check into a problem line: the linter never raises."""
        try:
            yield
        except Exception as err:  # noqa: BLE001 - a broken bundle may raise anything from MONAI or torch
            self.add(file, "", f"{what} failed: {type(err).__name__}: {_short(err)}")

    def exists(self, rel: str) -> bool:
        return (self.root / rel).is_file()

    def kind(self) -> str | None:
        """``monai_transfer.kind`` of the metadata: "random" / "source" / "file" (a starting point), "pretraining"."""
        try:
            meta = json.loads((self.root / META).read_text())
        except (OSError, ValueError):
            return None
        return (meta.get("monai_transfer") or {}).get("kind") if isinstance(meta, dict) else None

    def is_pretraining(self) -> bool:
        """A pretraining bundle: ``train.json`` pretrains an encoder and writes its fine-tuning bundle; it has no
        ``inference.json`` or ``models/model.pt``, and is not a MONAI supervised-training workflow."""
        return self.kind() == "pretraining"

    def is_starting_point(self) -> bool:
        """A starting-point bundle (``monai_transfer.kind`` in its metadata, a ``pretrained`` start in train.json):
        ``models/model.pt`` is what its ``train.json`` writes, so it need not exist yet."""
        try:
            meta = json.loads((self.root / META).read_text())
            train = json.loads((self.root / TRAIN).read_text())
        except (OSError, ValueError):
            return False
        kind = (meta.get("monai_transfer") or {}).get("kind") if isinstance(meta, dict) else None
        return kind in ("random", "source", "file") and isinstance(train, dict) and "network_def" in train

    # ------------------------------------------------------------------ 1, 7: files
    def check_files(self) -> None:
        pretraining = self.is_pretraining()
        for rel in REQUIRED_FILES:
            if pretraining and rel == INFER:
                continue
            if not self.exists(rel):
                self.add(rel, "", "required file is missing")
        self.check_large_files()
        if not self.exists(MODEL) and MODEL not in self.large_files and not (self.is_starting_point() or pretraining):
            self.add(MODEL, "", "required file is missing (and large_files.yml does not list it)")
        for path in sorted(self.root.rglob("*")):
            if not path.is_file() or path.is_symlink():
                continue
            rel = path.relative_to(self.root).as_posix()
            size = path.stat().st_size
            if size > MAX_FILE_BYTES and rel not in self.large_files:
                self.add(
                    rel, "", f"file over 25 MB ({size / 2**20:.1f} MB) not listed in large_files.yml; host it elsewhere"
                )

    def check_large_files(self) -> None:
        names = [n for n in LARGE_FILE_NAMES if self.exists(n)]
        if len(names) > 1:
            self.add(names[1], "", f"several large-file lists ({', '.join(names)}); keep one")
        if not names:
            return
        rel = names[0]
        try:
            text = (self.root / rel).read_text(encoding="utf-8")
            if rel.endswith(".json"):
                data = json.loads(text)
            else:
                import yaml

                data = yaml.safe_load(text)
        except Exception as err:  # noqa: BLE001
            self.add(rel, "", f"large-file list does not parse: {_short(err)}")
            return
        if not isinstance(data, dict) or not isinstance(data.get("large_files"), list):
            self.add(rel, "large_files", "large-file list malformed: expected a mapping with a list under large_files")
            return
        root_real = os.path.realpath(self.root)
        for i, entry in enumerate(data["large_files"]):
            key = f"large_files#{i}"
            if not isinstance(entry, dict):
                self.add(rel, key, "large-file entry malformed: expected a mapping with path, url, hash_val, hash_type")
                continue
            for field in LARGE_FILE_FIELDS:
                # MONAI's download_large_files drops an empty hash_val / hash_type (no check / md5); path and url
                # cannot be empty
                value = entry.get(field)
                if field not in entry or not isinstance(value, str) or (field in ("path", "url") and not value.strip()):
                    self.add(rel, f"{key}#{field}", f"large-file entry malformed: {field} missing or not a string")
            path, url, hash_type = entry.get("path"), entry.get("url"), entry.get("hash_type")
            if isinstance(url, str) and url and not re.match(r"^https?://", url):
                self.add(rel, f"{key}#url", f"large-file entry malformed: url is not http(s): {url!r}")
            if isinstance(hash_type, str) and hash_type and hash_type.lower() not in HASH_TYPES:
                msg = f"large-file entry malformed: hash_type {hash_type!r} not in {HASH_TYPES}"
                self.add(rel, f"{key}#hash_type", msg)
            if not isinstance(path, str) or not path:
                continue
            target = os.path.normpath(os.path.join(self.root, path))
            # the rule of monai.bundle.scripts._safe_large_file_path: no way out of the bundle
            if os.path.isabs(path) or os.path.commonpath([root_real, os.path.realpath(target)]) != root_real:
                self.add(rel, f"{key}#path", f"large-file path outside the bundle: {path!r}")
                continue
            norm = Path(os.path.relpath(target, self.root)).as_posix()
            self.large_files.add(norm)
            hash_val = entry.get("hash_val")
            if (
                os.path.isfile(target)
                and isinstance(hash_val, str)
                and hash_val
                and isinstance(hash_type, str)
                and hash_type.lower() in HASH_TYPES
            ):
                actual = _file_hash(Path(target), hash_type.lower())
                if actual.lower() != hash_val.lower():
                    msg = f"large-file hash mismatch: {hash_type} {actual} but {rel} says {hash_val}"
                    self.add(norm, "", msg)

    # ------------------------------------------------------------------ 2: JSON
    def check_json(self) -> None:
        for path in sorted(self.root.rglob("*.json")):
            if not path.is_file():
                continue
            rel = path.relative_to(self.root).as_posix()
            if rel in LARGE_FILE_NAMES:
                continue
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as err:
                self.add(rel, "", f"not readable as UTF-8 text: {_short(err)}")
                continue
            duplicates: list[str] = []
            try:
                data = _load_json(text, duplicates)
            except json.JSONDecodeError as err:
                self.add(rel, "", f"not valid JSON: line {err.lineno} column {err.colno}: {err.msg}")
                continue
            for k in dict.fromkeys(duplicates):
                self.add(rel, k, "duplicate JSON key: the last value silently wins")
            if rel.startswith("configs/") and not isinstance(data, dict):
                self.add(rel, "", f"config is not a JSON object (got {type(data).__name__})")
                continue
            self.json[rel] = data
            if not rel.startswith("configs/"):  # the style rule is the model zoo's for configs, not run outputs
                continue
            expected = {json.dumps(data, indent=4), json.dumps(data, indent=4, ensure_ascii=False)}
            if text.strip() not in expected:
                self.add(rel, "", "not written with a 4-space indent (model zoo style: json.dumps(..., indent=4))")

    # ------------------------------------------------------------------ 3, 4, 5: metadata
    def check_metadata(self) -> None:
        meta = self.json.get(META)
        if not isinstance(meta, dict):
            return
        self.check_schema(meta)
        version, changelog = meta.get("version"), meta.get("changelog")
        if "version" in meta and (not isinstance(changelog, dict) or str(version) not in changelog):
            self.add(META, "version", f"no changelog entry for version {version}")
        packages = meta.get("required_packages_version")
        if not isinstance(packages, dict) or "monai_transfer" not in packages:
            self.add(META, "required_packages_version", "required_packages_version does not name monai_transfer")
        fmt = meta.get("network_data_format")
        fmt = fmt if isinstance(fmt, dict) else {}
        inputs = fmt.get("inputs") if isinstance(fmt.get("inputs"), dict) else {}
        outputs = fmt.get("outputs") if isinstance(fmt.get("outputs"), dict) else {}
        if not isinstance(inputs.get("image"), dict):
            msg = "input description missing: image is what MONAI's verifiers feed the network"
            self.add(META, "network_data_format#inputs#image", msg)
        pred = outputs.get("pred")
        if not isinstance(pred, dict):
            msg = "output description missing: pred is what MONAI's verifiers check"
            self.add(META, "network_data_format#outputs#pred", msg)
        elif not isinstance(pred.get("channel_def"), dict) or not pred["channel_def"]:
            self.add(
                META,
                "network_data_format#outputs#pred#channel_def",
                "channel_def missing: MONAI Label reads the label names from it",
            )

    def load_schema(self) -> dict | None:
        path = Path(self.schema) if self.schema is not None else SCHEMA_FILE
        try:
            raw = path.read_bytes()
        except OSError as err:
            self.add(META, "schema", f"schema file unreadable: {path}: {_short(err)}")
            return None
        if self.schema is None and hashlib.md5(raw).hexdigest() != SCHEMA_MD5:
            self.add(META, "schema", f"shipped schema {path.name} does not match MD5 {SCHEMA_MD5}; not validated")
            return None
        try:
            return json.loads(raw)
        except json.JSONDecodeError as err:
            self.add(META, "schema", f"schema file is not JSON: {path}: {_short(err)}")
            return None

    def check_schema(self, meta: dict) -> None:
        url = meta.get("schema")
        if self.schema is None and isinstance(url, str) and url and not url.endswith("/" + SCHEMA_FILE.name):
            self.add(META, "schema", f"schema URL {url!r} is not {SCHEMA_FILE.name}, the schema checked offline")
        schema = self.load_schema()
        if schema is None:
            return
        import jsonschema

        validator_cls = jsonschema.validators.validator_for(schema)
        validator = validator_cls(schema)
        for err in sorted(validator.iter_errors(meta), key=lambda e: [str(p) for p in e.absolute_path]):
            path = [str(p) for p in err.absolute_path]
            if err.validator == "required":
                match = re.match(r"^'(.+)' is a required property", err.message)
                if match:
                    path.append(match.group(1))
            message = err.message
            if err.validator in ("anyOf", "oneOf") and err.context:
                message = jsonschema.exceptions.best_match(err.context).message
            self.add(META, "#".join(path), f"does not match the metadata schema: {_short(message)}")

    # ------------------------------------------------------------------ 6, 12: config strings and references
    def configs(self) -> list[str]:
        return [r for r in self.json if r.startswith("configs/") and r != META and isinstance(self.json[r], dict)]

    def check_paths(self) -> None:
        for rel in self.configs():
            for key, value in _walk(self.json[rel]):
                if not isinstance(value, str):
                    continue
                if value.startswith("$"):
                    bad = _absolute_literals(value[1:])
                elif value.startswith("%"):
                    macro = value[1:].split("#", 1)[0]
                    bad = [macro] if _ABS_PATH.match(macro) else []
                else:
                    bad = [value] if _ABS_PATH.match(value) else []
                for path in bad:
                    self.add(rel, key, f"absolute path {path!r}: derive paths from @bundle_root or @dataset_dir")

    def check_references(self) -> None:
        from monai.bundle import ConfigParser
        from monai.bundle.reference_resolver import ReferenceResolver

        train = self.json.get(TRAIN)
        for rel in self.configs():
            config = self.json[rel]
            merged = config
            if rel in OVERLAYS:
                if not isinstance(train, dict):
                    continue  # train.json's own problem is reported; an overlay alone has nothing to resolve
                try:
                    merged = ConfigParser.load_config_files([str(self.root / TRAIN), str(self.root / rel)])
                except Exception as err:  # noqa: BLE001
                    self.add(rel, "", f"does not merge over {TRAIN}: {type(err).__name__}: {_short(err)}")
                    continue
            parser = ConfigParser(config=json.loads(json.dumps(merged)))
            try:
                parser.resolve_macro_and_relative_ids()
                resolved = parser.get()
            except Exception as err:  # noqa: BLE001
                self.add(rel, "", f"config does not resolve (macros or relative ids): {_short(err)}")
                continue
            # report ids where they are written: the overlay's own items for an overlay
            for key, value in _walk(config):
                if not isinstance(value, str) or not value.startswith(("@", "$")):
                    continue
                try:
                    local = parser.get(key) if not key.startswith("+") else value
                except Exception:  # noqa: BLE001 - flat overlay keys such as "train#dataset#data"
                    local = value
                text = local if isinstance(local, str) else value
                for ref in ReferenceResolver.match_refs_pattern(text):
                    ref = ref.replace("::", "#")
                    if ref.startswith("_meta_"):  # the metadata, read by ConfigWorkflow under "_meta_"
                        if not _has_id({"_meta_": self.json.get(META)}, ref):
                            self.add(rel, key, f"unknown reference @{ref}: no such key in {META}")
                    elif ref and not _has_id(resolved, ref):
                        self.add(rel, key, f"unknown reference @{ref}: no such id in the config")

    # ------------------------------------------------------------------ 8: workflow properties
    def check_properties(self) -> None:
        from monai.bundle import ConfigWorkflow
        from monai.utils import BundleProperty, BundlePropertyConfig

        class _StaticPropertyWorkflow(ConfigWorkflow):
            """``ConfigWorkflow`` whose properties are looked up, not instantiated.

            ``check_properties`` calls ``hasattr`` for each required property; MONAI's ``_get_property`` raises
            ``RuntimeError`` before ``initialize()`` and ``KeyError`` for a missing id (``hasattr`` only swallows
            ``AttributeError``), and after ``initialize()`` it builds the trainer, dataloader and dataset, which needs
            the data. Here a property exists when its config id does, which is what the check is about.
            And ``_check_optional_id`` compares a reference as written (``"@train#handlers"``) with ``"@"`` plus the
            property id spelt with MONAI 1.6's separator (``"@train::handlers"``), so every ``#``-style config (the
            model zoo's) fails it; references are normalised first, as the resolver does when it resolves them.
            """

            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                _normalize_refs(self.parser.get())

            def _get_property(self, name: str, property: dict) -> Any:
                try:
                    prop_id = self._get_prop_id(name, property)
                except KeyError as err:
                    raise AttributeError(str(err)) from err
                return None if prop_id is None else self.parser[prop_id]

        meta_file = str(self.root / META) if META in self.json else None
        if self.is_pretraining():
            config = self.json.get(TRAIN)
            for id in PRETRAIN_IDS if isinstance(config, dict) else ():
                if not _has_id(config, id):
                    self.add(TRAIN, id, f"a pretraining config needs id {id}")
            return
        for rel, workflow_type, label_ids in (
            (TRAIN, "train", MONAI_LABEL_TRAIN_IDS),
            (INFER, "infer", MONAI_LABEL_INFER_IDS),
        ):
            config = self.json.get(rel)
            if not isinstance(config, dict):
                continue
            for id in label_ids:
                if not _has_id(config, id):
                    self.add(rel, id, f"MONAI Label needs id {id}")
            with self.guard(rel, f"ConfigWorkflow(workflow_type={workflow_type!r}).check_properties()"):
                with _quiet():
                    wf = _StaticPropertyWorkflow(
                        config_file=str(self.root / rel),
                        meta_file=meta_file,
                        logging_file=False,
                        workflow_type=workflow_type,
                        bundle_root=str(self.root),
                    )
                    missing = wf.check_properties() or []
                required = {n for n, p in wf.properties.items() if p.get(BundleProperty.REQUIRED, False)}
                for name in missing:
                    prop = wf.properties.get(name, {})
                    pid = str(prop.get(BundlePropertyConfig.ID, name)).replace("::", "#")
                    if pid.startswith("_meta_#"):
                        file, key = META, pid[len("_meta_#") :]
                    else:
                        file, key = rel, pid
                    if name in required:
                        msg = (
                            f"missing property {name!r} required by MONAI's "
                            f"ConfigWorkflow(workflow_type={workflow_type!r})"
                        )
                    else:
                        ref = str(prop.get(BundlePropertyConfig.REF_ID)).replace("::", "#")
                        msg = (
                            f"optional property {name!r} is referenced from {ref} under another id than @{pid} "
                            f"(MONAI's ConfigWorkflow(workflow_type={workflow_type!r}) cannot find it)"
                        )
                    self.add(file, key, msg)

    def check_logging(self) -> None:
        if not self.exists(LOGGING):
            return
        from monai.utils import optional_import

        validate, has_validate = optional_import("monai.bundle.workflows", name="_reject_executable_logging_config")
        try:
            text = (self.root / LOGGING).read_text(encoding="utf-8")
            parser = configparser.RawConfigParser()
            parser.read_string(text)
            for section in ("loggers", "handlers", "formatters"):
                if not parser.has_section(section):
                    raise ValueError(f"no [{section}] section (logging.config.fileConfig needs it)")
            if has_validate:
                validate(str(self.root / LOGGING))
        except Exception as err:  # noqa: BLE001
            self.add(LOGGING, "", f"not a logging config MONAI applies: {_short(err)}")

    # ------------------------------------------------------------------ 9, 10, 11: network, weights, export
    def io_info(self) -> tuple[tuple[int, ...], Any] | None:
        """Input shape ``(1, C, *spatial)`` and dtype from the metadata, MONAI's rule (``_get_fake_spatial_shape``)."""
        import torch
        from monai.bundle.scripts import _get_fake_spatial_shape
        from monai.utils import get_equivalent_dtype

        image = (((self.json.get(META) or {}).get("network_data_format") or {}).get("inputs") or {}).get("image")
        if not isinstance(image, dict):
            return None
        key = "network_data_format#inputs#image"
        try:
            channels = int(image["num_channels"])
            spatial = _get_fake_spatial_shape(tuple(image["spatial_shape"]))
            dtype = get_equivalent_dtype(image.get("dtype", "float32"), torch.Tensor)
        except Exception as err:  # noqa: BLE001
            self.add(META, key, f"cannot build an input from the image description: {_short(err)}")
            return None
        return (1, channels, *spatial), dtype

    def build_network(self, rel: str) -> Any:
        from monai.bundle import ConfigParser

        parser = ConfigParser()
        parser.read_config(f=str(self.root / rel))
        if META in self.json:
            parser.read_meta(f=str(self.root / META))
        parser["bundle_root"] = str(self.root)
        if NET_ID not in parser:
            self.add(rel, NET_ID, f"no {NET_ID}: the network cannot be built")
            return None
        try:
            with _quiet(), _on_sys_path(str(self.root)):
                self.skip_undownloaded_start(parser)
                net = parser.get_parsed_content(NET_ID)
        except Exception as err:  # noqa: BLE001
            cause = err.__cause__ or err.__context__
            why = f"{type(cause).__name__}: {_short(cause)}" if cause is not None else _short(err)
            self.add(rel, NET_ID, f"{NET_ID} does not instantiate: {why}")
            return None
        import torch

        if not isinstance(net, torch.nn.Module):
            self.add(rel, NET_ID, f"{NET_ID} is a {type(net).__name__}, not a torch.nn.Module")
            return None
        return net

    def skip_undownloaded_start(self, parser: Any) -> None:
        """Build ``network_def`` without its starting weights when they are a ``large_files.yml`` entry not fetched
        yet (a starting-point bundle as shipped) or a file the publisher hands out only on request, not placed yet;
        weights that are present are loaded, strictly, as a run would."""
        pid = f"{NET_ID}#pretrained"
        if pid not in parser:
            return
        value = parser.get_parsed_content(pid)
        if not isinstance(value, str) or "://" in value:
            return
        path = Path(value) if os.path.isabs(value) else self.root / value
        if path.exists():
            return
        try:
            rel = Path(os.path.relpath(path, self.root)).as_posix()
        except ValueError:  # another drive
            return
        if rel in self.large_files or rel == self.by_hand_start():
            parser[pid] = None

    def by_hand_start(self) -> str | None:
        """The starting file a publisher hands out only on request (placed by the user, so absent as shipped)."""
        try:
            meta = json.loads((self.root / META).read_text())
        except (OSError, ValueError):
            return None
        mt = meta.get("monai_transfer") if isinstance(meta, dict) else None
        entry = mt.get("starting_weights_by_hand") if isinstance(mt, dict) else None
        return entry.get("path") if isinstance(entry, dict) else None

    def check_network(self) -> None:
        if not isinstance(self.json.get(INFER), dict):
            return
        net = self.build_network(INFER)
        if net is None:
            return
        if isinstance(self.json.get(TRAIN), dict) and _has_id(self.json[TRAIN], NET_ID):
            self.compare_train_network(net)
        weights_ok = self.check_weights(net)
        self.check_net_in_out()
        if self.export and weights_ok is not False:
            info = self.io_info()
            if info is not None:
                with tempfile.TemporaryDirectory(prefix="bundle_check_") as tmp:
                    self.check_export(net, info, Path(tmp))

    def compare_train_network(self, infer_net: Any) -> None:
        train_net = self.build_network(TRAIN)
        if train_net is None:
            return
        a = {k: tuple(v.shape) for k, v in train_net.state_dict().items()}
        b = {k: tuple(v.shape) for k, v in infer_net.state_dict().items()}
        if a != b:
            diff = sorted(set(a) ^ set(b)) + sorted(k for k in set(a) & set(b) if a[k] != b[k])
            self.add(
                TRAIN,
                NET_ID,
                f"{NET_ID} differs from inference.json's: the trained weights will not load there ({_names(diff)})",
            )

    def check_weights(self, net: Any) -> bool | None:
        """Load ``models/model.pt`` strictly; ``None`` when absent, ``False`` when it does not fit."""
        import torch

        path = self.root / MODEL
        if not path.is_file():
            return None
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - truncated zip, pickle error, not a torch file
            self.add(MODEL, "", f"not a readable torch checkpoint (torch.load(weights_only=True)): {_short(err, 160)}")
            return False
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            kind = type(state).__name__ if not isinstance(state, dict) else "nested dict"
            self.add(MODEL, "", f"not a plain state_dict of {NET_ID} (got a {kind})")
            return False
        expected = net.state_dict()
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        mismatched = sorted(k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape))
        if missing or unexpected or mismatched:
            parts = []
            if missing:
                parts.append(f"{len(missing)} missing ({_names(missing)})")
            if unexpected:
                parts.append(f"{len(unexpected)} unexpected ({_names(unexpected)})")
            if mismatched:
                shown = [f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}" for k in mismatched]
                parts.append(f"{len(mismatched)} shape-mismatched ({_names(shown)})")
            self.add(MODEL, NET_ID, "weights do not fit the network: " + "; ".join(parts))
            return False
        try:
            net.load_state_dict(state, strict=True)
        except Exception as err:  # noqa: BLE001
            self.add(MODEL, NET_ID, f"weights do not fit the network: {_short(err)}")
            return False
        return True

    def check_net_in_out(self) -> None:
        from monai.bundle import verify_net_in_out

        pred = (((self.json.get(META) or {}).get("network_data_format") or {}).get("outputs") or {}).get("pred")
        if self.io_info() is None or not isinstance(pred, dict):
            return  # the metadata check reports what is missing
        fmt = "network_data_format#outputs#pred"
        try:
            with _quiet(), _on_sys_path(str(self.root)):
                verify_net_in_out(
                    net_id=NET_ID,
                    meta_file=str(self.root / META),
                    config_file=str(self.root / INFER),
                    device="cpu",
                    bundle_root=str(self.root),
                )
        except ValueError as err:
            text = str(err)
            if "output channel number" in text:
                self.add(META, f"{fmt}#num_channels", f"network output disagrees with the metadata: {text}")
            elif "dtype of output data" in text:
                self.add(META, f"{fmt}#dtype", f"network output disagrees with the metadata: {text}")
            else:
                self.add(META, "network_data_format", f"verify_net_in_out failed: {_short(text)}")
        except Exception as err:  # noqa: BLE001 - a forward pass that fails on the described input
            self.add(
                META,
                "network_data_format#inputs#image",
                "network forward fails on the described input (verify_net_in_out): "
                f"{type(err).__name__}: {_short(err)}",
            )

    def check_export(self, net: Any, info: tuple, tmp: Path) -> None:
        import torch
        from monai.bundle import ckpt_export

        shape, dtype = info
        g = torch.Generator().manual_seed(0)
        example = torch.rand(shape, generator=g).to(dtype)
        ckpt = self.root / MODEL
        if not ckpt.is_file():  # listed in large_files.yml and not downloaded: export the architecture
            ckpt = tmp / "model.pt"
            torch.save(net.state_dict(), str(ckpt))
        net.eval()
        with torch.no_grad():
            expected = net(example)
        ts_errors = []
        # scripting first (MONAI's default); tracing when the network does not script (e.g. a call to
        # torch.utils.checkpoint inside MONAI's Swin transformer); ONNX last
        for use_trace in (False, True):
            label = " (traced)" if use_trace else ""
            try:
                with _quiet(), _on_sys_path(str(self.root)):
                    ckpt_export(
                        net_id=NET_ID,
                        filepath=str(tmp / "model.ts"),
                        ckpt_file=str(ckpt),
                        meta_file=str(self.root / META),
                        config_file=str(self.root / INFER),
                        bundle_root=str(self.root),
                        use_trace=use_trace,
                        input_shape=list(shape) if use_trace else None,
                        # the outputs are compared below: torch.jit.trace's own re-trace check would repeat it
                        converter_kwargs={"check_trace": False} if use_trace else None,
                    )
                    module = torch.jit.load(str(tmp / "model.ts"), map_location="cpu")
                    module.eval()
                    with torch.no_grad():
                        actual = module(example)
            except Exception as err:  # noqa: BLE001 - scripting errors come in many types
                prefix = "when traced: " if use_trace else ""
                ts_errors.append(f"{prefix}{type(err).__name__}: {_short(err, 160)}")
                continue
            if not isinstance(actual, torch.Tensor) or actual.shape != expected.shape:
                got = tuple(actual.shape) if isinstance(actual, torch.Tensor) else type(actual).__name__
                msg = f"TorchScript export{label} computes another output: {got} vs eager {tuple(expected.shape)}"
                self.add(MODEL, NET_ID, msg)
            elif not torch.allclose(actual.float(), expected.float(), atol=ATOL, rtol=RTOL):
                diff = float((actual.float() - expected.float()).abs().max())
                msg = f"TorchScript export{label} differs from eager: max abs difference {diff:.3g} (atol {ATOL})"
                self.add(MODEL, NET_ID, msg)
            return
        ts_error = "; ".join(ts_errors)
        from monai_transfer.networks.export import export_onnx

        try:
            with _quiet():
                export_onnx(net, example, tmp / "model.onnx", dynamic_batch=False, atol=ATOL, rtol=RTOL)
        except Exception as err:  # noqa: BLE001
            self.add(
                MODEL,
                NET_ID,
                f"export failed: ckpt_export to TorchScript ({ts_error}) "
                f"and ONNX ({type(err).__name__}: {_short(err, 160)})",
            )

    # ------------------------------------------------------------------
    def run(self) -> list[BundleProblem]:
        if not self.root.is_dir():
            return [BundleProblem(str(self.root), "", "bundle directory does not exist")]
        with _quiet():  # MONAI's parser warns (duplicate keys, deprecations): here those are problem lines
            return self._run()

    def _run(self) -> list[BundleProblem]:
        with self.guard("", "file check"):
            self.check_files()
        with self.guard("", "JSON check"):
            self.check_json()
        with self.guard(META, "metadata check"):
            self.check_metadata()
        with self.guard("configs", "path check"):
            self.check_paths()
        with self.guard("configs", "reference check"):
            self.check_references()
        with self.guard(LOGGING, "logging config check"):
            self.check_logging()
        with self.guard("configs", "property check"):
            self.check_properties()
        with self.guard(INFER, "network check"):
            self.check_network()
        return self.problems


def check_bundle(
    bundle_dir: str | os.PathLike, *, export: bool = True, schema: str | None = None
) -> list[BundleProblem]:
    """Lint a MONAI bundle folder; return one ``BundleProblem`` per problem (an empty list for a sound bundle).

    Never modifies the bundle (exports go to a temporary directory), never uses the network, never raises on a broken
    bundle: every failure becomes a problem naming the file and key.

    Args:
        bundle_dir: the bundle root (holding ``configs/``, ``models/``, ``LICENSE``...).
        export: also export ``network_def`` with the bundle's weights via ``monai.bundle.ckpt_export`` (TorchScript;
            ONNX when the network does not script) and compare the exported outputs with eager (atol 1e-4).
        schema: a metadata JSON schema file to validate against instead of the shipped ``meta_schema_20240725.json``
            (whose MD5 is checked before use).
    """
    root = Path(bundle_dir).resolve()
    problems = _Checker(root, export=export, schema=schema).run()
    seen: set[BundleProblem] = set()
    unique = []
    for p in problems:
        if p not in seen:
            seen.add(p)
            unique.append(p)
    return unique
