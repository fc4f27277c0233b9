"""`basam serve`: a local click-to-segment page over basam's Predictor (engine.py: the work;
app.py: HTTP; static/: the page, plain HTML/JS/CSS served from here). The command is basam.cli.serve."""
