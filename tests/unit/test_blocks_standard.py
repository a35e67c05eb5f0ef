"""The blocks meet the standard Prefect's own integrations are held to: a description, a
documentation URL, a described field for every field and a code example that loads the block."""

from __future__ import annotations

import pytest
from prefect.blocks.core import Block
from prefect.testing.standard_test_suites import BlockStandardTestSuite

from fleetflow.blocks import Federation, KubeCluster


@pytest.mark.parametrize("block", [KubeCluster, Federation])
class TestFleetflowBlocks(BlockStandardTestSuite):
    @pytest.fixture
    def block(self, block: type[Block]) -> type[Block]:  # type: ignore[override]
        return block

    def test_has_a_valid_image(self, block: type[Block]) -> None:
        # The suite fetches the logo over the internet. fleetflow runs air-gapped, where a
        # remote logo is a broken image in the UI, so its blocks deliberately have none.
        assert block._logo_url is None
