"""Reading the image cache from an object store: one object per image vs tar shards.

    python bench/cache_read.py [--images 2000] [--shard-mb 8]

Starts an S3 server of its own (moto's, as the tests do, on a free loopback port), writes
--images cached JPEGs like ingest's (shorter side 160), uploads them as one object each and
packed into shards (worker.ml.shards), then measures in one run:

1. per object: fetching every image into the ML worker's cache (annotate.services.image_cache,
   10 requests at a time), the path a training takes now;
2. shards: streaming the shards once each, in sequence, the path a GPU trainer would take;
3. decoded: images/s out of the dataset on each side (per-file dataset over the local cache vs
   ShardDataset streaming from the bucket), decoding and the eval transform included.

moto is a Python server on the same cores as the client: its per-request cost is far above
S3's or MinIO's, so the per-object figure is a floor and the ratio is what the request count
costs here, not on a real object store.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--shard-mb", type=float, default=8)
    args = parser.parse_args()

    from ml_throughput import write_cache

    from tests.s3 import S3Server

    with tempfile.TemporaryDirectory() as folder_name:
        folder = Path(folder_name)
        server = S3Server(folder / "moto.log")
        try:
            bucket = server.new_bucket()
            os.environ.update(server.environment(bucket))
            os.environ["DATA_DIR"] = str(folder / "data")
            os.environ.setdefault("DJANGO_SETTINGS_MODULE", "annotate.settings")
            import django

            django.setup()

            from annotate.services.image_cache import ImageCache
            from worker.ml.data import CachedImageDataset, eval_transform
            from worker.ml.shards import ShardDataset, write_shards

            (folder / "cache").mkdir()
            samples = write_cache(folder / "cache", args.images)
            total = sum(Path(path).stat().st_size for path, _ in samples)
            client = server.client()
            for path, _ in samples:
                client.upload_file(path, bucket, f"preprocessed/{Path(path).name}")
            shards = write_shards(samples, folder / "shards", int(args.shard_mb * (1 << 20)))
            for shard in shards:
                client.upload_file(str(shard), bucket, f"shards/{shard.name}")
            print(
                f"{args.images} cached JPEGs, {total / args.images / 1024:.1f} KB each;"
                f" {len(shards)} shards of up to {args.shard_mb} MB; moto S3 on loopback,"
                f" {os.cpu_count()} cores"
            )

            cache = ImageCache(folder / "worker-cache", max_bytes=10 * total)
            names = [f"preprocessed/{Path(path).name}" for path, _ in samples]
            started = time.perf_counter()
            fetched = cache.get_many(names)
            per_object = time.perf_counter() - started
            assert all(fetched) and cache.stats.misses == args.images

            def open_shard(key: str):
                return client.get_object(Bucket=bucket, Key=key)["Body"]

            keys = [f"shards/{shard.name}" for shard in shards]
            started = time.perf_counter()
            streamed = 0
            for key in keys:
                body = open_shard(key)
                while chunk := body.read(1 << 20):
                    streamed += len(chunk)
            sharded = time.perf_counter() - started
            assert streamed == sum(shard.stat().st_size for shard in shards)

            transform = eval_transform(128)
            started = time.perf_counter()
            per_file = CachedImageDataset(samples, transform)
            count = len([per_file[index] for index in range(len(per_file))])
            decoded_local = time.perf_counter() - started
            started = time.perf_counter()
            count_shards = sum(1 for _ in ShardDataset(keys, transform, opener=open_shard))
            decoded_shards = time.perf_counter() - started
            assert count == count_shards == args.images
            print(f"{'':34} {'images/s':>10} {'MB/s':>8}")
            for name, seconds, size in (
                ("per object into the cache (x10)", per_object, total),
                ("shards, streamed in sequence", sharded, streamed),
                ("decoded: per-file dataset (local)", decoded_local, total),
                ("decoded: shards from the bucket", decoded_shards, streamed),
            ):
                print(f"{name:34} {args.images / seconds:10.0f} {size / seconds / (1 << 20):8.1f}")
            print(f"shards / per object (fetch): {per_object / sharded:.1f}x")
            print(cache.stats.line())
        finally:
            server.stop()


if __name__ == "__main__":
    main()
