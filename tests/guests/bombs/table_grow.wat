;; A component that exports weir:operator/hooks@0.1.0 (so weir loads it)
;; and whose core module grows a table without end as it starts (`table.grow`
;; in its start function). weir must stop it when it instantiates the
;; operator.
(component
  (core module $m
    (memory (export "memory") 1)
    (table $t 1 funcref)
    ;; Grows the table 64 Ki elements at a time until growth fails; weir
    ;; must trap it long before it costs the host anything.
    (func $grow
      (loop $more
        (br_if $more (i32.ne (table.grow $t (ref.null func) (i32.const 65536)) (i32.const -1)))))
    (start $grow)
    (func (export "realloc") (param i32 i32 i32 i32) (result i32) unreachable)
    (func (export "open") (param i32 i32 i32 i32 i32 i32) (result i32) unreachable)
    (func (export "process") (param i32 i32 i32) (result i32) unreachable)
    (func (export "on-timers") (param i32 i32) (result i32) unreachable))
  (core instance $i (instantiate $m))

  (type $state-kind (enum "value" "list" "map"))
  (type $state-descriptor (record (field "name" string) (field "kind" $state-kind) (field "ttl-ms" (option u64))))
  (type $operator-info (record
    (field "name" string) (field "subtask-index" u32) (field "parallelism" u32)
    (field "config" (list (tuple string string)))))

  (func $open (param "info" $operator-info) (result (result (list $state-descriptor) (error string)))
    (canon lift (core func $i "open") (memory $i "memory") (realloc (func $i "realloc"))))
  (func $process (param "input" u32) (param "records" (list u8)) (result (result (list u8) (error string)))
    (canon lift (core func $i "process") (memory $i "memory") (realloc (func $i "realloc"))))
  (func $on-timers (param "timers" (list u8)) (result (result (list u8) (error string)))
    (canon lift (core func $i "on-timers") (memory $i "memory") (realloc (func $i "realloc"))))

  (instance $hooks
    (export "state-kind" (type $state-kind))
    (export "state-descriptor" (type $state-descriptor))
    (export "operator-info" (type $operator-info))
    (export "open" (func $open))
    (export "process" (func $process))
    (export "on-timers" (func $on-timers)))
  (export "weir:operator/hooks@0.1.0" (instance $hooks)))
