"""The Gradio UI: one builder per tab. It polls kft's Workspace; it never trains or generates by itself."""
