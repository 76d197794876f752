"""The Gradio UI: one builder per tab. It polls kft's Workspace; it never trains or generates by itself.

May import: kft.services, kft.system, kft.config, kft.data, kft.runs, kft.models, kft.inference, kft.training.
"""
