{
  "targets": [
    {
      "target_name": "mmapkit",
      "sources": [
        "native/addon.c",
        "native/constants.c",
        "native/fd.c",
        "native/mapping.c",
        "native/guard.c",
        "native/futex.c",
        "native/futex_pi.c",
        "native/shm.c",
        "native/mutex.c",
        "native/uring.c",
        "native/util.c"
      ],
      "cflags_c": ["-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-O2"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
