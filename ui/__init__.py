"""ControlNet Studio's face: a Gradio Blocks app, laid out like a desktop tool.

- `ui.app.main(argv)`: what `python3 launch.py [--listen] [--port N] [--auth user:pass] ...` runs.
- `ui.layout.build_app()`: the Blocks (sketch, pose and upload tabs, the control units, generation,
  gallery, fidelity meter, recipes) with the client-shaped HTTP endpoints of `ui.api`
  (generate, annotate, interrupt, models, annotators), which the GUI's own handlers share.
Handlers are thin: widget values in, a request or an annotator call, widgets out. This package
never imports torch; engine and annotator errors become messages in the page.
"""
