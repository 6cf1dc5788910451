"""The load benchmark's floor: a minimal endpoint doing one indexed SELECT and one INSERT.

Served only when BENCH_FLOOR_ENDPOINT is on (bench/volunteer_load.py turns it on in its own
server); the table it writes is created and dropped by the benchmark.
"""

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from annotate.rows import lookups


@csrf_exempt
@require_POST
def floor(request: HttpRequest, image_id: int) -> HttpResponse:
    with connection.cursor() as cursor:
        cursor.execute(lookups.floor_image(), [image_id])
        row = cursor.fetchone()
        cursor.execute("INSERT INTO bench_floor (image_id) VALUES (%s) RETURNING id", [image_id])
        inserted = cursor.fetchone()[0]
    return JsonResponse({"image": row[0] if row else None, "id": inserted}, status=201)
