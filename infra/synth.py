"""``make synth``: synthesize into cdk.out/ with cdk-nag (AwsSolutions), then cfn-lint every template.

Exits non-zero on any cdk-nag error (synth raises) or cfn-lint finding. Needs no AWS account.
"""

from __future__ import annotations

import sys
from pathlib import Path

from cfnlint.api import lint_all

from infra.app_factory import ROOT, build_app


def main() -> int:
    outdir = ROOT / "cdk.out"
    assembly = build_app(outdir=str(outdir)).synth()
    findings = []
    for stack in assembly.stacks:
        template = Path(stack.template_full_path).read_text()
        findings += lint_all(template)
    # Errors and warnings fail the build; informational hints (I…) are counted, not enforced.
    failing = [match for match in findings if match.rule.id[0] in "EW"]
    for match in failing:
        print(f"cfn-lint: {match}", file=sys.stderr)
    names = ", ".join(stack.stack_name for stack in assembly.stacks)
    print(
        f"synthesized {names} into {outdir}: cdk-nag clean, "
        f"cfn-lint {len(failing)} error(s)/warning(s), {len(findings) - len(failing)} informational"
    )
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
