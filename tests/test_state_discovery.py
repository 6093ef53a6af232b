"""The project's state is found like git finds its repository, and commands that only look
never create it."""

import os
import subprocess
import sys
from pathlib import Path

READ_ONLY = (["runs"], ["status", "run_12345678"], ["artifacts", "run_12345678"], ["events", "run_12345678"],
             ["paths"], ["doctor"])


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items()
           if key not in ("SPARKLE_STATE_DIR", "DAGSTER_HOME", "ARTIFACTS_FS_ROOT", "SPARKLE_PLAN_INBOX")}
    return subprocess.run([sys.executable, "-m", "sparkle_motion_dagster.cli.main", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, check=False)


def everything_under(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*"))


def test_read_only_commands_in_an_empty_folder_create_nothing_and_say_where_they_looked(tmp_path):
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    for args in READ_ONLY:
        result = cli(empty, *args)
        said = result.stdout + result.stderr
        assert f"state/dagster_home in {empty}" in said, (args, said)
        assert "SPARKLE_STATE_DIR" in said, (args, said)
        assert result.returncode in (0, 1, 2), (args, said)
        assert "Traceback" not in said
        assert everything_under(empty) == [], (args, everything_under(empty))


def test_read_only_commands_with_a_state_dir_that_does_not_exist_leave_it_alone(tmp_path):
    missing = tmp_path / "nowhere"
    env = {**os.environ, "SPARKLE_STATE_DIR": str(missing)}
    env.pop("DAGSTER_HOME", None)
    env.pop("ARTIFACTS_FS_ROOT", None)
    for args in READ_ONLY:
        result = subprocess.run([sys.executable, "-m", "sparkle_motion_dagster.cli.main", *args], cwd=tmp_path,
                                env=env, capture_output=True, text=True, check=False)
        assert f"SPARKLE_STATE_DIR={missing}" in result.stdout + result.stderr, args
        assert not missing.exists(), args


def test_commands_in_a_subfolder_find_the_projects_state(tmp_path):
    project = tmp_path / "project"
    deeper = project / "notes" / "drafts"
    deeper.mkdir(parents=True)
    submitted = cli(project, "submit", "--sample", "--preview")
    assert submitted.returncode == 0, submitted.stderr
    run_id = submitted.stdout.split()[1]
    assert (project / "state" / "dagster_home" / "dagster.yaml").is_file()

    listed = cli(deeper, "runs")
    assert listed.returncode == 0, listed.stderr
    assert run_id in listed.stdout
    status = cli(deeper, "status", run_id)
    assert status.returncode == 0, status.stderr
    assert run_id in status.stdout
    paths = cli(deeper, "paths")
    assert f"state:         {project / 'state'}" in paths.stdout
    assert everything_under(project / "notes") == [deeper]
