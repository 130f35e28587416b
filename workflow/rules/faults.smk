# Faults a user meets, each with a message that says what to do (issue 15). Before any job of a
# real run (not -n): the pre-flight check (edgemoe.preflight: free disk for the planned jobs, cells
# that cannot fit the device's memory, the model files the user gave). At the end of a run: one
# short summary of failed jobs and failed cells (edgemoe.faults).
# Reads Snakemake's DAG and scheduler (workflow.dag, workflow.scheduler) from the handlers; where a
# Snakemake version lacks them the check or summary is skipped with a note, never the run.
# Config (once config/schema.yaml has the key): preflight: {disk: stop|warn|off, memory: warn|off},
# default stop and warn.
import sys

from edgemoe import faults as FAULTS
from edgemoe import preflight as PREFLIGHT
from edgemoe.engine_axis import EngineAxisError
from edgemoe.modelcheck import ModelFileError


def _note(text):
    print(text, file=sys.stderr, flush=True)


def _planned_jobs():
    return [
        PREFLIGHT.Job(j.rule.name, dict(j.wildcards), tuple(map(str, j.output))) for j in workflow.dag.needrun_jobs()
    ]


def _run_summary():
    """Failed jobs, and the records of the cells this run finished (a summary never fails a run)."""
    try:
        failed = [
            FAULTS.FailedJob(j.rule.name, dict(j.wildcards), tuple(map(str, j.log))) for j in workflow.scheduler.failed
        ]
        records = [
            (str(j.output.records), str(j.log[0]) if j.log else None)
            for j in workflow.dag.finished_jobs
            if "records" in j.output.keys()
        ]
        text = FAULTS.summary(failed, records)
    except Exception as e:  # noqa: BLE001
        _note(f"(no failure summary: {type(e).__name__}: {e})")
        return
    if text:
        _note(text)


onstart:
    try:
        jobs = _planned_jobs()
    except AttributeError as e:
        _note(f"pre-flight skipped: this Snakemake's DAG is not readable here ({e})")
    else:
        try:
            lines = PREFLIGHT.run_preflight(EXP, jobs, workflow.cores, config.get("preflight"))
            lines += store_preflight(jobs)  # store.smk: a planned push needs the store reachable
        except (PREFLIGHT.PreflightError, ModelFileError, EngineAxisError) as e:
            raise WorkflowError(str(e)) from None
        _note("\n".join(lines))


onsuccess:
    _run_summary()


onerror:
    _run_summary()
