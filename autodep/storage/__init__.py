"""Object stores: model files and batch data from s3:// URLs (AWS S3 and compatible stores).

`refs` finds and replaces s3:// references in a model entry (cheap to import);
`store.Store` fetches them into the local cache (`cache`) through boto3 (`s3`).
"""
