"""Partition snapshots: repositories (file://, s3://), taking, restoring and trimming."""
