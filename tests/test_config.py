import pytest

from otel_processor.config import ProcessorConfig, load_config
from otel_processor.errors import ConfigError


def test_defaults_work_without_a_file():
    config = load_config(None)
    assert isinstance(config, ProcessorConfig)
    assert config.service.forward


@pytest.mark.parametrize(
    "text, line, words",
    [
        ("service:\n  listen_grpc: nope\n", 2, "HOST:PORT"),
        ("servce:\n  forward: a:1\n", 1, "unknown setting 'servce'"),
        ("engine:\n  max_identities: lots\n", 2, "expected int"),
        ("service:\n\tforward: a:1\n", 2, "invalid YAML"),
    ],
)
def test_bad_config_names_file_line_and_problem(tmp_path, text, line, words):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    message = str(info.value)
    assert message.startswith(f"{path}:{line}:"), message
    assert words in message
