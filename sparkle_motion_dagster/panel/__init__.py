"""The notebook control panel (``pip install 'sparkle-motion-dagster[notebook]'``): a thin
ipywidgets client that launches runs through Dagster's GraphQL API and reads status, files,
control and review from the artifact service. Nothing here imports Dagster."""

from sparkle_motion_dagster.panel.control_panel import ControlPanel, create_control_panel
from sparkle_motion_dagster.panel.endpoints import PanelEndpoints

__all__ = ["ControlPanel", "PanelEndpoints", "create_control_panel"]
