"""sparkle_motion_dagster"""
