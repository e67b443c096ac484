"""The bundled demo set: a plan of clips and labels, rendered with ffmpeg."""
