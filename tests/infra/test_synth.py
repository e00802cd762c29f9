"""`make synth` stays clean: cdk-nag AwsSolutions and cfn-lint (errors and warnings) on every template."""

from infra import synth


def test_synth_is_nag_and_lint_clean(capsys):
    assert synth.main() == 0
    assert "cdk-nag clean, cfn-lint 0 error(s)/warning(s)" in capsys.readouterr().out
