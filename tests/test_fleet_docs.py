"""docs/fleet.md shows what the tests run: the example playbooks and units verbatim, the NRPE
command line runs, the alert rules pass promtool, the sample plugin output parses."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, good_jail
from tests.test_nagios import plugin_output

FLEET = (ROOT / "docs" / "fleet.md").read_text()
EXAMPLES = ROOT / "integrations/ansible/ansible_collections/chrootcheck/chrootcheck/examples"
UNITS = ROOT / "chrootcheck" / "data" / "systemd"


def blocks(lang: str) -> list[str]:
    fences = re.findall(r"^```(\w*)\n(.*?)^```$", FLEET, flags=re.S | re.M)
    return [body for name, body in fences if name == lang]


@pytest.mark.parametrize(
    "path",
    [
        EXAMPLES / "scan.yml",
        EXAMPLES / "fix.yml",
        UNITS / "chrootcheck-textfile.service",
        UNITS / "chrootcheck-textfile.timer",
    ],
)
def test_docs_show_the_tested_files_verbatim(path: Path) -> None:
    assert path.read_text() in [b for lang in ("yaml", "ini") for b in blocks(lang)], path


def test_docs_alert_rules_pass_promtool(promtool: str, tmp_path: Path) -> None:
    (rules,) = [b for b in blocks("yaml") if b.startswith("groups:")]
    path = tmp_path / "rules.yml"
    path.write_text(rules)
    r = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r
    # Every metric the rules use is one the format writes.
    from chrootcheck.formats import RenderOptions
    from chrootcheck.formats.prometheus_format import PREFIX, families
    from chrootcheck.report.model import Report

    names = {PREFIX + f.name for f in families(Report(jails=[]), RenderOptions())}
    assert set(re.findall(r"chrootcheck_\w+", rules)) <= names


def test_docs_sample_plugin_output_parses() -> None:
    (sample,) = [b for b in blocks("") if b.startswith("CHROOTCHECK ")]
    state, _, perf, lines = plugin_output(sample)
    assert state == "CRITICAL" and perf["failing_jails"] == 1 and len(lines) == 2


def test_docs_nrpe_command_runs(cli, jail: Path, tmp_path: Path) -> None:
    (line,) = re.findall(r"^command\[check_chrootcheck\]=(.*)$", FLEET, flags=re.M)
    argv = shlex.split(line)
    assert argv[:2] == ["/usr/bin/sudo", "/usr/local/bin/chrootcheck"]
    # The same arguments, with the test's discover root (no daemon configs) and a jail.
    (tmp_path / "etc").mkdir()
    r = cli(*argv[2:], "--discover-root", str(tmp_path / "etc"), "--no-probe")
    assert (r.code, plugin_output(r.stdout)[0]) == (0, "OK"), r
    assert "no jail to check" in r.stdout
    r = cli(*argv[2:], str(jail), "--discover-root", str(tmp_path / "etc"), "--no-probe")
    assert (r.code, plugin_output(r.stdout)[0]) == (2, "CRITICAL"), r


@pytest.mark.root
def test_docs_nrpe_command_ok_on_a_correct_jail(cli, jail: Path, tmp_path: Path) -> None:
    good_jail(jail)
    (line,) = re.findall(r"^command\[check_chrootcheck\]=(.*)$", FLEET, flags=re.M)
    (tmp_path / "etc").mkdir()
    r = cli(*shlex.split(line)[2:], str(jail), "--discover-root", str(tmp_path / "etc"))
    assert (r.code, plugin_output(r.stdout)[0]) == (0, "OK"), r  # with the probe


def test_readme_links_the_fleet_docs() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "## Fleets and monitoring" in readme and "docs/fleet.md" in readme
