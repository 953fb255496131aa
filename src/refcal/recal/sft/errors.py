"""What stops an SFT run before its first step: a setup that cannot train (`TrainingSetupError`), or a corpus that
meets a frozen bench (`ContaminationError`)."""

from __future__ import annotations

from refcal.corpus import ContaminationReport
from refcal.errors import RefcalError


class TrainingSetupError(RefcalError):
    """Training cannot start: a base that does not load, a missing LoRA target module, an output folder that
    belongs to another run. Raised before any step is taken."""


class ContaminationError(RefcalError):
    """The corpus meets a frozen bench and contamination was not allowed; `report` holds every hit."""

    def __init__(self, report: ContaminationReport) -> None:
        self.report = report
        benches = sorted({hit.bench for hit in report.hits})
        super().__init__(f"the corpus meets frozen bench(es) {', '.join(benches)} in {len(report.hits)} place(s); "
                         "training on a bench it will be judged on would make that bench worthless. Remove those "
                         "rows, or pass --allow-contamination (it is written into the training receipt)")
