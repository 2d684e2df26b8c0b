{
  "targets": [
    {
      "target_name": "rcudp",
      "sources": ["rcudp.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-std=gnu11"],
      "libraries": ["-lpthread"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
