"""Champion/challenger: the candidate replaces the model release the fleet runs now.

On each hub the champion (gate.yaml ``ml.champion``, or ``--ml-champion``) is deployed first
and scored on the golden set, then the candidate is deployed on top of it as an upgrade and
scored on the same set; a loss of precision, recall or F1 beyond ``ml.max_regression`` blocks
promotion. Both figures go to ml.jsonl and so to gate.json. A candidate whose model file is
the champion's has nothing to be compared with: the figure says so and the check passes.
"""

from __future__ import annotations

import pytest

from hil.deploy.candidate import Candidate, load_candidate
from hil.errors import FailureClass, UserError
from hil.hub import Hub
from hil.ml.card import ModelCard
from hil.ml.metrics import METRICS, quality
from hil.ml.policy import MlPolicy
from hil_pytest.allure_labels import labels
from hil_pytest.deploy import deploy_on, failure_message, restore_on
from hil_pytest.ml import MlFigures, card_of
from hil_pytest.verdicts import ClassifiedFailure, InfrastructureSkip
from suites.ml.model_run import collect

pytestmark = [pytest.mark.ml, pytest.mark.needs_service("greengrass", "docker", "mqtt_broker")]


def _champion(policy: MlPolicy) -> tuple[Candidate, ModelCard]:
    if policy.champion is None:
        pytest.skip("no champion: gate.yaml ml.champion (or --ml-champion) names the release the fleet runs")
    try:
        champ = load_candidate(policy.champion)
    except UserError as exc:
        raise pytest.UsageError(f"ml champion {policy.champion}: {exc}") from None
    card = card_of(champ)
    if card is None:
        raise pytest.UsageError(f"ml champion {policy.champion}: no model_card in its candidate.yaml")
    return champ, card


@labels("ML model", "Champion/challenger", "blocker")
def test_challenger_does_not_regress(hub: Hub, candidate: Candidate, model_card: ModelCard,
                                     ml_policy: MlPolicy, ml_figures: MlFigures,
                                     request: pytest.FixtureRequest) -> None:
    champ, champ_card = _champion(ml_policy)
    model = {"name": model_card.name, "version": model_card.version, "sha256": model_card.sha256}
    values: dict[str, object] = {"champion_version": champ_card.version, "champion_sha256": champ_card.sha256,
                                 "challenger_version": model_card.version,
                                 "challenger_sha256": model_card.sha256}
    if champ_card.sha256 == model_card.sha256:
        values["note"] = "the candidate's model is the champion's: nothing to compare"
        ml_figures.check("champion", hub.name, values, model)
        return
    first = deploy_on(request.config, hub, champ)
    try:
        if not first.result.ok:
            raise InfrastructureSkip(f"{hub.name}: the champion {champ.root.name} could not be deployed, "
                                     f"so nothing can be compared: {failure_message(first.result, champ)}")
        old = collect(hub, champ, champ_card, ml_policy, drifted=False)
        second = deploy_on(request.config, hub, candidate, stack=True)
        if not second.result.ok:
            raise ClassifiedFailure(f"{failure_message(second.result, candidate)} (as an upgrade of the "
                                    f"champion {champ_card.version})",
                                    second.result.failure_class or FailureClass.PRODUCT)
        new = collect(hub, candidate, model_card, ml_policy, drifted=False)
    finally:
        restore_on(first)
    q_old = quality(old.golden.labels, old.golden_replay.labels())
    q_new = quality(new.golden.labels, new.golden_replay.labels())
    for m in METRICS:
        values[f"champion_{m}"] = round(q_old.value(m), 4)
        values[f"challenger_{m}"] = round(q_new.value(m), 4)
    ml_figures.check("champion", hub.name, values, model)
