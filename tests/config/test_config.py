import pytest

from otel_processor.identity.catalog import load_catalog
from otel_processor.config import ProcessorConfig, load_config
from otel_processor.errors import ConfigError
from paths import ROOT


def test_defaults_work_without_a_file():
    config = load_config(None)
    assert isinstance(config, ProcessorConfig)
    assert config.service.forward


@pytest.mark.parametrize(
    "load, text, line, words",
    [
        (load_config, "service:\n  listen_grpc: nope\n", 2, "HOST:PORT"),
        (load_config, "servce:\n  forward: a:1\n", 1, "unknown setting 'servce'"),
        (load_config, "engine:\n  max_identities: lots\n", 2, "expected int"),
        (load_config, "service:\n\tforward: a:1\n", 2, "invalid YAML"),
        (load_catalog, "identities:\n  - principal: x\n    kind: robot\n", 2, "kind must be one of"),
        (load_catalog, "identities:\n  - principal: x\n    expected_networks: [10.0.0.0/33]\n", 2, "not a CIDR"),
        (load_catalog, "identities:\n  - kind: workload\n", 2, "principal"),
    ],
)
def test_bad_config_or_catalog_names_file_line_and_problem(tmp_path, load, text, line, words):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load(str(path))
    message = str(info.value)
    assert message.startswith(f"{path}:{line}:"), message
    assert words in message


def test_the_settings_table_lists_every_setting():
    """Every field of every config section appears in the settings table (docs/settings.md), so
    the table cannot fall behind the code."""
    import dataclasses
    import os

    from otel_processor.config import ProcessorConfig

    page = open(os.path.join(ROOT, "docs", "settings.md"), encoding="utf-8").read()
    table = page[page.index("# Settings"):page.index("## Identity catalog")]

    def names(cls, prefix=""):
        for f in dataclasses.fields(cls):
            if f.name.startswith("_"):
                continue
            hint = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
            nested = {"ServiceConfig", "ServerTLSConfig", "AuthConfig", "EngineConfig", "MaskingConfig",
                      "EventsConfig", "TelemetryConfig"}
            if hint in nested:
                import otel_processor.config as c
                import otel_processor.engine.config as e
                yield from names(getattr(c, hint, None) or getattr(e, hint), f"{prefix}{f.name}.")
            else:
                yield f"{prefix}{f.name}"

    # a row names a setting in full (`service.tls.cert_file`) or, beside its sibling, by its last
    # part (`service.tls.cert_file` / `.key_file`)
    missing = [n for n in names(ProcessorConfig)
               if f"`{n}`" not in table and f"{n.rsplit('.', 1)[-1]}`" not in table]
    assert not missing, missing
