"""nbgrader preprocessors the course adds to nbgrader's own pipelines (see nbgrader_config.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
from pathlib import Path
from queue import Empty
from unittest import mock

import zmq
from jupyter_client.manager import AsyncKernelManager
from jupyter_core.utils import ensure_async, run_sync
from nbclient.client import timestamp
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat import NotebookNode
from nbgrader import utils
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.preprocessors import ClearHiddenTests, Execute, NbGraderPreprocessor, SaveAutoGrades
from traitlets import Bool, Float, Instance, Int, Unicode, default

from autograder import imports
from autograder.pipeline import early_kernel
from autograder.sandbox import bubblewrap as sandbox
from autograder.sandbox.timelimits import TimeLimit
from autograder.settings import CHECK_NAME, CHECKER_VARIABLE, GradingSettings, course_settings


def grade_id_of(cell: NotebookNode) -> str | None:
    """The cell's nbgrader grade_id (nbgrader.utils has flags such as is_grade, but no accessor for the id)."""
    return cell.metadata.get("nbgrader", {}).get("grade_id")


class HideHiddenTests(ClearHiddenTests):
    """Feedback: drop hidden-test regions from test cells, as the release does, so no test code is shown."""

    enforce_metadata = False

    def preprocess_cell(self, cell, resources, index):
        # Only the test cells hold hidden tests; a student's own cell that merely mentions the markers is
        # shown as written (nbgrader would refuse it, and the feedback with it).
        if utils.is_grade(cell) and not utils.is_solution(cell):
            return super().preprocess_cell(cell, resources, index)
        return cell, resources


class ErrorMessageOnly(NbGraderPreprocessor):
    """Feedback: shorten every error output to `ExceptionName: message`.

    A traceback would show the lines of the hidden test and of the grading helpers it called.
    """

    def preprocess_cell(self, cell, resources, index):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                output["traceback"] = [f"{output.get('ename', 'Error')}: {output.get('evalue', '')}"]
        return cell, resources


class RestoreGradedCells(NbGraderPreprocessor):
    """Autograding: undo what a submission did to the cells nbgrader grades, before nbgrader checks them.

    nbgrader refuses a notebook in which a graded cell appears twice or changed its type (a test cell turned
    into markdown, say), which would cost the student every point. Instead: later copies of a graded cell
    are dropped, and a graded cell whose type or nbgrader flags were changed gets them back from the
    gradebook (nbgrader's OverwriteCells then restores a locked cell's source). Deleted cells are put back by
    `OverwriteCells.add_missing_cells`. A cell whose nbgrader flags name no cell of the source (an earlier
    release's, or a student's invention) loses them and is graded as an ordinary cell.
    """

    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        with Gradebook(info["db_url"]) as gradebook:
            source = {
                cell.name: cell for cell in gradebook.find_notebook(info["notebook"], info["assignment"]).source_cells
            }
            kept, seen = [], set()
            for cell in nb.cells:
                flags = cell.metadata.get("nbgrader")
                if flags is not None and (
                    not flags or not isinstance(flags, dict) or not isinstance(flags.get("grade_id", ""), str)
                ):
                    del cell.metadata["nbgrader"]  # emptied or malformed flags make nbgrader's later steps fail
                grade_id = grade_id_of(cell)
                if grade_id in seen:
                    self.log.warning("dropping a second copy of graded cell %s", grade_id)
                    continue
                if grade_id in source:
                    seen.add(grade_id)
                    self._restore(cell, source[grade_id], gradebook, info)
                elif "nbgrader" in cell.metadata:
                    # A cell of an earlier release that the source no longer has (a student who downloaded the
                    # notebook before the instructor removed it), or one a student flagged himself: an ordinary
                    # cell, not nbgrader's missing source cell that fails the whole notebook.
                    self.log.warning("cell %s is not in the source notebook: graded as an ordinary cell", grade_id)
                    del cell.metadata["nbgrader"]
                kept.append(cell)
            nb.cells = kept
        return nb, resources

    @staticmethod
    def _restore(cell, original, gradebook, info) -> None:
        if cell.cell_type != original.cell_type:
            cell.cell_type = original.cell_type
            cell.source = original.source
            if original.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
            else:
                cell.pop("outputs", None)
                cell.pop("execution_count", None)
        flags = dict(
            grade_id=original.name,
            locked=original.locked,
            schema_version=3,
            cell_type=original.cell_type,
            checksum=original.checksum,
            task=False,
        )
        try:
            points = gradebook.find_grade_cell(original.name, info["notebook"], info["assignment"]).max_score
            flags.update(grade=True, points=points)
        except MissingEntry:
            flags.update(grade=False)
        try:
            gradebook.find_solution_cell(original.name, info["notebook"], info["assignment"])
            flags.update(solution=True)
        except MissingEntry:
            flags.update(solution=False)
        cell.metadata["nbgrader"] = flags


class MachineOverloaded(RuntimeError):
    """A cell's time limit fired because the machine was overloaded, not because of the submission: the
    notebook stops, and its grade is a grading error (regraded)."""


class KernelProbeFailed(RuntimeError):
    """The kernel failed TrustedExecute's probe, before any code of the submission ran: the grading
    environment is at fault, not the student."""


class CappedKernelManager(AsyncKernelManager):
    """nbgrader's kernel manager, whose clients' sockets get the options set on its own ZeroMQ context.

    jupyter_client gives every client a context of its own (shared, it would be destroyed with the manager
    under the client's heartbeat thread); the cap on message size that TrustedExecute sets on the manager's
    context would then hold for the control socket only, and one huge display message would reach the
    grader whole on the IOPub socket.
    """

    def client(self, **kwargs):
        client = super().client(**kwargs)
        for option, value in self.context.sockopts.items():  # before start_channels makes the sockets
            client.context.setsockopt(option, value)
        return client


class TrustedExecute(Execute):
    """Autograding: nbgrader's Execute, with every hidden test run, and every verdict kept, by the grader.

    While the notebook runs, an autograder.pipeline.check_server.CheckServer serves the hidden test cells. Before a
    test cell runs, the checks its source (as the gradebook has it, not as submitted) names are allowed to
    run once; when it ends, the cell's verdict is recorded here: passed exactly when every one of them was
    called in that window and passed. `SaveVerdictGrades` scores from that record alone; whatever the cell
    printed, displayed or raised changes nothing. The record is also written to `verdict_file` (a file in
    the grader's private course folder) with the reason of every failure, and with `kernel_error` when the
    kernel never reached the first cell (it did not start, or failed its probe).

    Before the first cell the kernel runs Grading.kernel_probe (the same for every submission);
    when it fails, `KernelProbeFailed` stops the execution. The kernel already runs it once as it boots, so
    the probe's imports overlap nbgrader's set-up.

    A cell's time limit (nbgrader's Execute.timeout) counts the CPU time of the kernel's sandbox where
    `sandbox_uid` names one whose cgroup counts it, with a wall-clock backstop (autograder.sandbox.timelimits): when
    the backstop fires on an overloaded machine, `MachineOverloaded` stops the execution and the record says
    why (`overloaded`). A kernel that dies (crash, exit, memory), or that stops responding after a cell's
    timeout, costs the cell it happened in and every later cell, each with the reason; the cells that ran
    before keep their grades. Outputs past Grading.output_limit bytes are dropped, and
    a ZeroMQ message over that size disconnects the kernel, so a flood of output cannot exhaust the grader.
    """

    checker_folder = Unicode(
        "",
        help="Folder for the check server's socket, reachable by the kernel by "
        "this same path (the sandbox binds it); default: a private /tmp "
        "folder.",
    ).tag(config=True)
    verdict_file = Unicode(
        "",
        help="Where to write the verdict of every test cell, and why the kernel never "
        "reached the first cell if it did not (JSON).",
    ).tag(config=True)
    settings = Instance(
        GradingSettings,
        help="The grading settings (autograder.settings): output_limit, kernel_probe, the cell's time limit "
        "and wall_clock_factor, the wire's limits. Set by the grader; by default those of nbgrader_config.py.",
    ).tag(config=True)
    seed = Int(0, help="The submission's seed for the hidden checks (autograder.batch.seeds).").tag(config=True)
    early_kernel = Unicode(
        "",
        help="Key of the kernel the grader started for this notebook before nbgrader was "
        "ready (autograder.pipeline.early_kernel); empty: start one here.",
    ).tag(config=True)
    sandbox_uid = Int(
        None,
        allow_none=True,
        help="Host uid of the kernel's sandbox, whose cgroup counts its "
        "CPU time for the cells' time limits; None: wall-clock "
        "limits.",
    ).tag(config=True)
    cores = Float(
        0.0,
        help="CPU cores the sandbox may use (its quota), by which the machine is judged when a "
        "cell's wall-clock backstop fires; 0: all of this machine's.",
    ).tag(config=True)
    store_widget_state = Bool(
        False,
        help="Keep widget state from the kernel's comm messages in the notebook: off, "
        "as nothing would count it against output_limit (and the feedback "
        "shows each widget's text form).",
    ).tag(config=True)

    extra_arguments: list[str]  # nbclient's traitlet (List(Unicode())): the kernel's command-line arguments

    @default("settings")
    def _course_settings(self) -> GradingSettings:
        return course_settings()

    def __init__(self, **kwargs):
        kwargs.setdefault("kernel_manager_class", CappedKernelManager)
        super().__init__(**kwargs)
        self._outputs_now = []

    def preprocess(self, nb, resources=None, km=None):
        self._pending_checks = _hidden_checks(resources)
        self._verdicts: dict[str, tuple[bool, str]] = {}
        self._kernel_died: tuple[str, str] | None = None  # (ename, evalue) for every cell after the kernel died
        self._kernel_error = ""  # why the kernel never got to the first cell; the grader's fault
        self._output_bytes = 0
        self._overloaded = ""
        self._cpu_clock = sandbox.cpu_clock(self.sandbox_uid)
        self._waits = sandbox.waits(self.sandbox_uid)
        self._sandboxes_clock = sandbox.all_sandboxes_cpu_clock(self.sandbox_uid)
        self._server = None
        with tempfile.TemporaryDirectory(prefix="dpc-") as scratch, contextlib.ExitStack() as server_scope:
            self._checker_address = os.path.join(self.checker_folder or scratch, "checker")
            self._server_scope = server_scope  # the check server closes here (see _open_window)
            with mock.patch.dict(
                os.environ, {CHECKER_VARIABLE: self._checker_address}
            ):  # unsandboxed kernels inherit it
                try:
                    return super().preprocess(nb, resources, km)
                finally:
                    for grade_id in self._pending_checks:  # test cells that never ran
                        self._verdicts.setdefault(grade_id, (False, "not run: the test cell did not execute"))
                    if self.verdict_file:
                        Path(self.verdict_file).write_text(
                            json.dumps(
                                {
                                    "cells": self._verdicts,
                                    "kernel_error": self._kernel_error,
                                    "overloaded": self._overloaded,
                                }
                            )
                        )
                    resources.setdefault("verdicts", {}).update(self._verdicts)

    async def async_start_new_kernel(self, **kwargs):
        preload = f"--IPKernelApp.exec_lines={[self.settings.kernel_probe]!r}"
        if self.settings.kernel_probe and preload not in self.extra_arguments:
            # The kernel also runs the probe's code as it boots, while nbgrader is still setting up (about 2 s
            # of imports that would otherwise wait for it); the probe proper then finds them done. Only the probe
            # proper decides: a failure at boot is just printed to the kernel's own (discarded) stderr.
            self.extra_arguments = [*self.extra_arguments, preload]
        try:
            await super().async_start_new_kernel(**kwargs)
        except Exception as error:
            self._kernel_error = _did_not_start(error)
            raise

    start_new_kernel = run_sync(async_start_new_kernel)  # nbclient binds the sync names to its own methods

    async def async_start_new_kernel_client(self):
        try:
            client = await super().async_start_new_kernel_client()
        except Exception as error:
            self._kernel_error = _did_not_start(error)
            raise
        if self.settings.kernel_probe:
            try:
                reply = await self.async_wait_for_reply(
                    client.execute(self.settings.kernel_probe, silent=True, store_history=False)
                )
            except (DeadKernelError, CellTimeoutError) as error:
                reply = {"content": {"ename": type(error).__name__, "evalue": str(error)}}
            content = (reply or {}).get("content", {"ename": "TimeoutError", "evalue": "no reply"})
            if content.get("status") != "ok":
                self._kernel_error = (
                    f"the kernel failed its probe {self.settings.kernel_probe!r}: {content.get('ename', 'Error')}: "
                    f"{content.get('evalue', '')}"
                )
                await self._async_cleanup_kernel()
                raise KernelProbeFailed(self._kernel_error)
        return client

    start_new_kernel_client = run_sync(async_start_new_kernel_client)

    def _open_window(self, checks) -> None:
        """Let `checks` run once, from now until `_close_window`; the check server starts with the first test cell.

        It starts that late because it needs torch, whose import takes seconds: the kernel boots and the cells
        before the first test run meanwhile (`grade.run_jobs` imports torch in the background). Until then no
        socket exists, so a check that a cell of the submission tries to run is refused as outside a window.
        """
        if checks and self._server is None:
            check_server = imports.load(
                "autograder.pipeline.check_server"
            )  # maybe beside the warm-up (autograder.imports)
            self._server = self._server_scope.enter_context(
                check_server.CheckServer(self._checker_address, self.settings.wire, self.seed)
            )
        if self._server is not None:
            self._server.open_window(checks)

    def _close_window(self) -> dict:
        return self._server.close_window() if self._server is not None else {}

    def create_kernel_manager(self):
        kernel_name = self.kernel_name or self.nb.metadata.get("kernelspec", {}).get("name", "")
        adopted = early_kernel.take(self.early_kernel, kernel_name) if self.early_kernel else None
        if adopted is not None:  # already running: nbclient skips the start, then owns it as its own
            self.km = adopted
            return adopted
        return self._new_kernel_manager()

    def _new_kernel_manager(self):
        manager = super().create_kernel_manager()
        # Set before the start, which already connects the control socket.
        manager.context.setsockopt(zmq.MAXMSGSIZE, self.settings.output_limit)
        return manager

    @classmethod
    def start_kernel_early(cls, config, path: str):
        """Start now the kernel that an executor configured by `config` starts for a notebook in `path`.

        The same manager, arguments and working folder, because the same code starts it; `config` must name
        the kernel (`kernel_name`), as there is no notebook yet. NBGRADER_EXECUTION is set as nbgrader's
        autograde sets it around the execution, which has not begun. Returns the kernel's manager.
        """
        executor = cls(config=config)
        executor.resources = {"metadata": {"path": path}}
        executor.km = executor._new_kernel_manager()
        with utils.setenv(NBGRADER_EXECUTION="autograde"):
            executor.start_new_kernel()
        return executor.km

    def preprocess_cell(self, cell, resources, index):
        grade_id = grade_id_of(cell)
        if self._kernel_died:
            if cell.cell_type == "code":
                cell.outputs = [_error(*self._kernel_died)]
                self._record(grade_id, cell)
            return cell, resources
        try:
            return super().preprocess_cell(cell, resources, index)
        except (DeadKernelError, CellTimeoutError) as error:
            timed_out = isinstance(error, CellTimeoutError)
            self._kernel_died = (
                "CellTimeoutError" if timed_out else "DeadKernelError",
                "not run: the kernel stopped responding in an earlier cell"
                if timed_out
                else "not run: the kernel died in an earlier cell",
            )
            self._close_window()
            cell.outputs.append(
                _error("CellTimeoutError", "the cell passed its timeout and its kernel stopped responding")
                if timed_out
                else _error(
                    "DeadKernelError",
                    "the kernel died while this cell ran (it crashed, "
                    "exited, ran out of memory or sent too much output)",
                )
            )
            self._record(grade_id, cell)
            return cell, resources

    POLL = 0.5  # seconds between two looks at a running cell's clocks

    async def _async_poll_for_reply(self, msg_id, cell, timeout, task_poll_output_msg, task_poll_kernel_alive):
        """nbclient's wait for a cell's reply, with the cell's time limit kept by a `TimeLimit` (its
        sandbox's CPU time, a wall-clock backstop) instead of the wall clock alone."""
        if timeout is None:
            return await super()._async_poll_for_reply(
                msg_id, cell, timeout, task_poll_output_msg, task_poll_kernel_alive
            )
        limit = TimeLimit(
            self.settings.cell_timeout,  # exact: nbclient's `timeout` is whole seconds
            self._cpu_clock,
            self.cores,
            self.settings.wall_clock_factor,
            waits=self._waits,
            sandboxes_clock=self._sandboxes_clock,
        )
        timeout_reply = None
        while True:
            try:
                if timeout_reply:
                    msg = timeout_reply
                    msg["parent_header"] = {"msg_id": msg_id}
                else:
                    wait = min(self.POLL, limit.remaining_wall()) if self._cpu_clock else limit.remaining_wall()
                    msg = await ensure_async(self.kc.shell_channel.get_msg(timeout=wait))
                if msg["parent_header"].get("msg_id") != msg_id:
                    continue
                if self.record_timing:
                    cell["metadata"]["execution"]["shell.execute_reply"] = timestamp(msg)
                try:
                    await asyncio.wait_for(task_poll_output_msg, self.iopub_timeout)
                except (TimeoutError, Empty):
                    if self.raise_on_iopub_timeout:
                        task_poll_kernel_alive.cancel()
                        raise CellTimeoutError.error_from_timeout_and_cell(
                            "Timeout waiting for IOPub output", self.iopub_timeout, cell
                        ) from None
                    self.log.warning("Timeout waiting for IOPub output")
                task_poll_kernel_alive.cancel()
                return msg
            except Empty:
                expiry = limit.check()
                if expiry is None:
                    continue
                task_poll_kernel_alive.cancel()
                await self._async_check_alive()
                if expiry.overloaded:
                    self._overloaded = expiry.message
                    raise MachineOverloaded(expiry.message) from None
                timeout_reply = await self._async_handle_timeout(timeout, cell)

    def on_cell_execute(self, cell, cell_index, **kwargs):
        grade_id = grade_id_of(cell)
        self._open_window(self._pending_checks.get(grade_id, ()) if grade_id is not None else ())

    def on_cell_executed(self, **kwargs):
        super().on_cell_executed(**kwargs)
        cell = kwargs["cell"]
        grade_id = grade_id_of(cell)
        verdicts = self._close_window()
        failures = [v.message for v in verdicts.values() if not v.passed]
        if failures and not any(output.output_type == "error" for output in cell.outputs):
            cell.outputs.append(_error("GradingFailure", failures[0]))
        self._record(grade_id, cell, verdicts)

    def _record(self, grade_id, cell, verdicts=None) -> None:
        """The verdict of a test cell: passed when each of its checks ran in its window and passed."""
        checks = self._pending_checks.pop(grade_id, None)
        if not checks:
            return
        verdicts = verdicts or {}
        failed = [verdicts[name] for name in checks if name in verdicts and not verdicts[name].passed]
        if all(name in verdicts and verdicts[name].passed for name in checks):
            self._verdicts[grade_id] = (True, "")
        elif failed and failed[0].ran:
            self._verdicts[grade_id] = (False, failed[0].message)
        else:  # the check never ran: the cell's own error says why
            self._verdicts[grade_id] = (
                False,
                _first_error(cell) or (failed[0].message if failed else "the hidden test never ran"),
            )

    def output(self, outs, msg, display_id, cell_index):
        if not self._within_output_limit(len(json.dumps(msg.get("content", {}), default=str)), outs):
            return None
        return super().output(outs, msg, display_id, cell_index)

    def process_message(self, msg, cell, cell_index):
        self._outputs_now = cell.outputs  # where a display update past the limit leaves its marker
        content = msg.get("content") or {}
        if type(content.get("execution_count", 0)) is not int and content.get("execution_count") is not None:
            del content["execution_count"]  # nbclient copies it into the cell from any message, uncounted
        return super().process_message(msg, cell, cell_index)

    def _update_display_id(self, display_id, msg):
        # An update rewrites every earlier output of its display id, and each copy is written out again (in
        # the autograded notebook, in the feedback): each counts against the limit.
        copies = sum(len(indices) for indices in self._display_id_map.get(display_id, {}).values())
        size = copies * len(json.dumps(msg.get("content", {}), default=str)) if copies else 0
        if self._within_output_limit(size, self._outputs_now):
            super()._update_display_id(display_id, msg)

    def on_comm_open_jupyter_widget(self, msg):
        return None  # nbclient would mimic a front end's Output widget, and keep its captures in widget state

    def _within_output_limit(self, size: int, outs) -> bool:
        self._output_bytes += size
        if self._output_bytes <= self.settings.output_limit:
            return True
        if self._output_bytes - size <= self.settings.output_limit:
            outs.append(
                NotebookNode(
                    output_type="stream",
                    name="stdout",
                    text=f"[grader: output past {self.settings.output_limit} bytes dropped]\n",
                )
            )
        return False


class SaveVerdictGrades(SaveAutoGrades):
    """Autograding: score each test cell from TrustedExecute's verdicts, never from what the cell showed.

    nbgrader's own SaveAutoGrades reads a cell's outputs (an `execute_result` can claim any score); here a
    test cell gets its points exactly when its verdict says passed. Other graded cells (written answers,
    solution cells) keep nbgrader's rules.
    """

    def preprocess(self, nb, resources):
        self._verdicts = resources.get("verdicts", {})
        return super().preprocess(nb, resources)

    def _add_score(self, cell, resources) -> None:
        if cell.cell_type != "code" or utils.is_solution(cell):
            return super()._add_score(cell, resources)
        meta = cell.metadata["nbgrader"]
        grade = self.gradebook.find_grade(meta["grade_id"], self.notebook_id, self.assignment_id, self.student_id)
        passed, _ = self._verdicts.get(meta["grade_id"], (False, ""))
        grade.auto_score = float(meta["points"]) if passed else 0.0
        grade.needs_manual_grade = grade.manual_score is not None
        self.gradebook.db.commit()


def _did_not_start(error: Exception) -> str:
    return f"the kernel did not start: {type(error).__name__}: {error}"


def _first_error(cell) -> str:
    """The cell's error, as `Name: message`: a timeout when there was one (it is the cause of whatever the
    interrupt raised after it), else the first error shown."""
    errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    errors.sort(key=lambda o: o.get("ename") != "CellTimeoutError")
    return f"{errors[0].get('ename', 'Error')}: {errors[0].get('evalue', '')}".strip().rstrip(":") if errors else ""


def _error(name: str, message: str) -> NotebookNode:
    return NotebookNode(output_type="error", ename=name, evalue=message, traceback=[f"{name}: {message}"])


def _hidden_checks(resources) -> dict[str, list[str]]:
    """grade_id -> names of the checks that the test cell calls, read from the gradebook's copy of the source."""
    info = (resources or {}).get("nbgrader", {})
    with Gradebook(info["db_url"]) as gradebook:
        notebook = gradebook.find_notebook(info["notebook"], info["assignment"])
        found = {cell.name: CHECK_NAME.findall(cell.source or "") for cell in notebook.source_cells}
    return {name: checks for name, checks in found.items() if checks}
