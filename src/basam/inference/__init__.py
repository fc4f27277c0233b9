"""Running a model on images: the promptable predictor, the automatic mask generator and the image
transforms (resize, pad, coordinate mapping) that both share."""
