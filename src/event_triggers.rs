//! What the event triggers (sql/event_triggers.sql) need from a DDL command that PostgreSQL only
//! exposes to C, and the marker that tells them a trigger change is the extension's own.
//!
//! - `_renamed_from(cmd)`: the old name in a rename of a relation, a column or a schema;
//! - `_command_targets(cmd, action)`: the tables an ALTER TABLE attaches or detaches, or moves to
//!   another schema;
//! - `_subcommand_columns(cmd, action)`: the columns an ALTER TABLE adds or retypes;
//! - `_before_trigger_ddl()`: CREATE TRIGGER from a dump replaces what auto-protection created,
//!   and DROP TRIGGER of a scrub trigger is refused unless the extension itself drops it;
//! - `_note_rewrite(tbl)` / `_rewritten_tables()`: the tables a command rewrote (table_rewrite),
//!   whose values were written without row triggers;
//! - `_internal_ddl(statement)` / `_in_internal_ddl()`: the extension's own trigger DDL.

use std::cell::{Cell, RefCell};
use std::ffi::CStr;

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::pg_sys::{self, function_name};
use pgrx::prelude::*;
use pgrx::{PgList, PgLogLevel, PgSqlErrorCode};

use crate::catalog::{extension_function, relation_name, trigger_args, triggers, TRIGGER_NAME};

thread_local! {
    /// How deep the extension's own trigger DDL is nested (see `_internal_ddl`).
    static INTERNAL_DDL: Cell<u32> = const { Cell::new(0) };
    /// Tables rewritten by DDL, with the top-level transaction that rewrote them.
    static REWRITTEN: RefCell<Vec<(pg_sys::TransactionId, pg_sys::Oid)>> = const { RefCell::new(Vec::new()) };
}

crate::v1_function_info!(pg_finfo_renamed_from);

/// SQL `mastodon_ip_scrub._renamed_from(pg_ddl_command) RETURNS text` (STRICT): the name a
/// relation, a column or a schema had before the command renamed it (`ALTER TABLE`, `ALTER INDEX`,
/// `ALTER VIEW`, ... `RENAME`, `RENAME COLUMN`, `ALTER TYPE ... RENAME ATTRIBUTE`,
/// `ALTER SCHEMA ... RENAME`), or the schema `SET SCHEMA` moved a relation from; NULL for any
/// other command.
///
/// # Safety
/// Called only by the function manager, with the pg_ddl_command that
/// pg_event_trigger_ddl_commands() returned in this ddl_command_end trigger.
#[pg_guard]
#[no_mangle]
pub unsafe extern "C-unwind" fn renamed_from(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: the argument is a pg_ddl_command, a pointer to a CollectedCommand that lives until
    // the command ends; its parse tree is a Node whose tag says which struct it is.
    let old = unsafe {
        let cmd = command(fcinfo);
        let moved = simple_statement::<pg_sys::AlterObjectSchemaStmt>(
            cmd,
            pg_sys::NodeTag::T_AlterObjectSchemaStmt,
        );
        match simple_statement::<pg_sys::RenameStmt>(cmd, pg_sys::NodeTag::T_RenameStmt) {
            // SET SCHEMA records the schema it moved the object from as the command's secondary
            // object; the relation keeps its name.
            None if moved.is_some() => {
                let old = pg_sys::get_namespace_name((*cmd).d.simple.secondaryObject.objectId);
                (!old.is_null()).then(|| CStr::from_ptr(old).to_string_lossy().into_owned())
            }
            None => None,
            Some(stmt) => {
                let old = match stmt.renameType {
                    pg_sys::ObjectType::OBJECT_COLUMN
                    | pg_sys::ObjectType::OBJECT_ATTRIBUTE
                    | pg_sys::ObjectType::OBJECT_SCHEMA => stmt.subname,
                    pg_sys::ObjectType::OBJECT_TABLE
                    | pg_sys::ObjectType::OBJECT_INDEX
                    | pg_sys::ObjectType::OBJECT_VIEW
                    | pg_sys::ObjectType::OBJECT_MATVIEW
                    | pg_sys::ObjectType::OBJECT_SEQUENCE
                    | pg_sys::ObjectType::OBJECT_FOREIGN_TABLE
                        if !stmt.relation.is_null() =>
                    {
                        (*stmt.relation).relname
                    }
                    _ => std::ptr::null_mut(),
                };
                (!old.is_null()).then(|| CStr::from_ptr(old).to_string_lossy().into_owned())
            }
        }
    };
    // SAFETY: fcinfo is valid for this call.
    unsafe { return_datum(fcinfo, old.and_then(IntoDatum::into_datum)) }
}

crate::v1_function_info!(pg_finfo_command_targets);

/// SQL `mastodon_ip_scrub._command_targets(pg_ddl_command, action text) RETURNS oid[]` (STRICT):
/// the tables the command applied `action` to, for the actions that move a table into or out of
/// a partition tree or a schema: 'attach partition' and 'detach partition' (the partitions),
/// 'set schema' (the table moved). Empty for anything else.
///
/// # Safety
/// As for `renamed_from`; the second argument is a text datum.
#[pg_guard]
#[no_mangle]
pub unsafe extern "C-unwind" fn command_targets(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: as in renamed_from; the second argument is text.
    let targets = unsafe {
        let cmd = command(fcinfo);
        let action = String::from_datum(pgrx::fcinfo::pg_getarg_datum_raw(fcinfo, 1), false)
            .unwrap_or_default();
        let mut targets = Vec::new();
        if action == "set schema" {
            // A simple statement found means `cmd` is not NULL.
            if simple_statement::<pg_sys::AlterObjectSchemaStmt>(
                cmd,
                pg_sys::NodeTag::T_AlterObjectSchemaStmt,
            )
            .is_some()
            {
                targets.push((*cmd).d.simple.address.objectId);
            }
        } else {
            for sub in subcommands(cmd) {
                if subcommand_action(sub) == Some(action.as_str()) {
                    targets.extend(subcommand_table(sub));
                }
            }
        }
        targets
    };
    // SAFETY: fcinfo is valid for this call.
    unsafe { return_datum(fcinfo, targets.into_datum()) }
}

crate::v1_function_info!(pg_finfo_subcommand_columns);

/// SQL `mastodon_ip_scrub._subcommand_columns(pg_ddl_command, action text) RETURNS text[]`
/// (STRICT): the columns an ALTER TABLE (or ALTER TYPE) adds ('add column') or gives a new type
/// ('alter column type'): the columns whose values a table rewrite computes anew, without row
/// triggers. A rewrite copies every other column unchanged.
///
/// # Safety
/// As for `renamed_from`; the second argument is a text datum.
#[pg_guard]
#[no_mangle]
pub unsafe extern "C-unwind" fn subcommand_columns(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // SAFETY: as in renamed_from; a subcommand's definition is checked to be a ColumnDef before
    // it is read as one, and names are NUL-terminated.
    let columns = unsafe {
        let action = String::from_datum(pgrx::fcinfo::pg_getarg_datum_raw(fcinfo, 1), false)
            .unwrap_or_default();
        let mut columns = Vec::new();
        for sub in subcommands(command(fcinfo)) {
            let name = match action.as_str() {
                "alter column type"
                    if sub.subtype == pg_sys::AlterTableType::AT_AlterColumnType =>
                {
                    sub.name
                }
                "add column"
                    if crate::compat::is_add_column(sub)
                        && pgrx::is_a(sub.def, pg_sys::NodeTag::T_ColumnDef) =>
                {
                    (*sub.def.cast::<pg_sys::ColumnDef>()).colname
                }
                _ => std::ptr::null_mut(),
            };
            if !name.is_null() {
                columns.push(CStr::from_ptr(name).to_string_lossy().into_owned());
            }
        }
        columns
    };
    // SAFETY: fcinfo is valid for this call.
    unsafe { return_datum(fcinfo, columns.into_datum()) }
}

/// The subcommands of an ALTER TABLE (or ALTER TYPE) command; none for other commands.
///
/// # Safety
/// `cmd` must be NULL or a valid CollectedCommand, which must outlive the iterator.
unsafe fn subcommands<'a>(
    cmd: *const pg_sys::CollectedCommand,
) -> impl Iterator<Item = &'a pg_sys::AlterTableCmd> {
    // SAFETY: per the contract; an ALTER TABLE's subcommand list holds CollectedATSubcmd entries,
    // whose parse trees are checked to be AlterTableCmd nodes before the cast.
    unsafe {
        let list = match cmd.as_ref() {
            Some(cmd) if cmd.type_ == pg_sys::CollectedCommandType::SCT_AlterTable => {
                cmd.d.alterTable.subcmds
            }
            _ => std::ptr::null_mut(),
        };
        PgList::<pg_sys::CollectedATSubcmd>::from_pg(list)
            .iter_ptr()
            .filter_map(|sub| sub.as_ref())
            .filter(|sub| pgrx::is_a(sub.parsetree, pg_sys::NodeTag::T_AlterTableCmd))
            .map(|sub| &*sub.parsetree.cast::<pg_sys::AlterTableCmd>())
            .collect::<Vec<_>>()
            .into_iter()
    }
}

/// The `_command_targets` action an ALTER TABLE subcommand performs, if any.
fn subcommand_action(cmd: &pg_sys::AlterTableCmd) -> Option<&'static str> {
    match cmd.subtype {
        pg_sys::AlterTableType::AT_AttachPartition => Some("attach partition"),
        pg_sys::AlterTableType::AT_DetachPartition
        | pg_sys::AlterTableType::AT_DetachPartitionFinalize => Some("detach partition"),
        _ => None,
    }
}

/// The table an attach or detach subcommand names. PostgreSQL does not
/// record it in the collected subcommand's address, so the name is looked up again: the command
/// has just run and holds its lock, so the name still means that table.
///
/// # Safety
/// `cmd` must be a subcommand of the ALTER TABLE that has just run.
unsafe fn subcommand_table(cmd: &pg_sys::AlterTableCmd) -> Option<pg_sys::Oid> {
    // SAFETY: per the contract; the node tags are checked before each cast.
    unsafe {
        if !pgrx::is_a(cmd.def, pg_sys::NodeTag::T_PartitionCmd) {
            return None;
        }
        let name = (*cmd.def.cast::<pg_sys::PartitionCmd>()).name;
        if name.is_null() {
            return None;
        }
        let relid = pg_sys::RangeVarGetRelidExtended(
            name,
            pg_sys::NoLock as pg_sys::LOCKMODE,
            pg_sys::RVROption::RVR_MISSING_OK,
            None,
            std::ptr::null_mut(),
        );
        (relid != pg_sys::InvalidOid).then_some(relid)
    }
}

/// The CollectedCommand behind a pg_ddl_command argument 0.
///
/// # Safety
/// `fcinfo` must carry a pg_ddl_command as its first argument.
unsafe fn command(fcinfo: pg_sys::FunctionCallInfo) -> *mut pg_sys::CollectedCommand {
    // SAFETY: per the contract.
    unsafe {
        pgrx::fcinfo::pg_getarg_datum_raw(fcinfo, 0).cast_mut_ptr::<pg_sys::CollectedCommand>()
    }
}

/// The parse tree of a simple command, when it is a `T` (tagged `tag`).
///
/// # Safety
/// `cmd` must be NULL or a valid CollectedCommand; `T` must be the struct for `tag`.
unsafe fn simple_statement<'a, T>(
    cmd: *const pg_sys::CollectedCommand,
    tag: pg_sys::NodeTag,
) -> Option<&'a T> {
    // SAFETY: per the contract; the tag is checked before the cast.
    unsafe {
        let cmd = cmd.as_ref()?;
        if cmd.type_ != pg_sys::CollectedCommandType::SCT_Simple
            || cmd.parsetree.is_null()
            || (*cmd.parsetree).type_ != tag
        {
            return None;
        }
        Some(&*cmd.parsetree.cast::<T>())
    }
}

/// Returns `datum` from a V1 function, or NULL for `None`.
///
/// # Safety
/// `fcinfo` must be the current call's.
unsafe fn return_datum(
    fcinfo: pg_sys::FunctionCallInfo,
    datum: Option<pg_sys::Datum>,
) -> pg_sys::Datum {
    match datum {
        Some(datum) => datum,
        // SAFETY: per the contract.
        None => unsafe { pgrx::fcinfo::pg_return_null(fcinfo) },
    }
}

crate::v1_function_info!(pg_finfo_before_trigger_ddl);

/// ddl_command_start event trigger for CREATE TRIGGER and DROP TRIGGER.
///
/// - A plain `CREATE TRIGGER zz_mastodon_ip_scrub` on a table that already has one becomes
///   `CREATE OR REPLACE`: pg_dump writes the scrub trigger into its post-data section, and by
///   then restoring the table has already auto-protected it. What the statement leaves behind is
///   corrected at ddl_command_end either way.
/// - `DROP TRIGGER` of a scrub trigger — recognised by its function, whatever it is called and
///   whatever its table is called now — is refused unless the extension drops it itself
///   (unprotect()). Dropping the table drops its trigger as always.
///
/// # Safety
/// Called only by the function manager as an event trigger.
#[pg_guard]
#[no_mangle]
pub unsafe extern "C-unwind" fn before_trigger_ddl(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // SAFETY: context is checked to be EventTriggerData before it is read; the parse tree is the
    // statement about to be executed, its tag checked before each cast.
    unsafe {
        let context = (*fcinfo).context;
        if context.is_null() || (*context).type_ != pg_sys::NodeTag::T_EventTriggerData {
            error!(
                "mastodon_ip_scrub._before_trigger_ddl() can only be called as an event trigger"
            );
        }
        let tree = (*context.cast::<pg_sys::EventTriggerData>()).parsetree;
        if tree.is_null() {
            return pg_sys::Datum::from(0);
        }
        match (*tree).type_ {
            pg_sys::NodeTag::T_CreateTrigStmt => {
                replace_restored_trigger(&mut *tree.cast::<pg_sys::CreateTrigStmt>())
            }
            pg_sys::NodeTag::T_DropStmt => {
                let stmt = &*tree.cast::<pg_sys::DropStmt>();
                if stmt.removeType == pg_sys::ObjectType::OBJECT_TRIGGER && !in_internal_ddl() {
                    for object in PgList::<pg_sys::Node>::from_pg(stmt.objects).iter_ptr() {
                        refuse_dropping_scrub_trigger(object, stmt.missing_ok);
                    }
                }
            }
            _ => {}
        }
    }
    pg_sys::Datum::from(0)
}

crate::v1_function_info!(pg_finfo_before_create_trigger);

/// Release 0.1.0's name for `before_trigger_ddl`, which its `_before_create_trigger()` names.
/// Between installing this library and `ALTER EXTENSION mastodon_ip_scrub UPDATE`, the 0.1.0 event
/// trigger (tag CREATE TRIGGER only) calls it; the upgrade script drops that function.
///
/// # Safety
/// Called only by the function manager as an event trigger.
#[pg_guard]
#[no_mangle]
pub unsafe extern "C-unwind" fn before_create_trigger(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // SAFETY: same contract as before_trigger_ddl.
    unsafe { before_trigger_ddl(fcinfo) }
}

/// See `before_trigger_ddl`.
///
/// # Safety
/// `stmt` must be the CREATE TRIGGER statement about to run.
unsafe fn replace_restored_trigger(stmt: &mut pg_sys::CreateTrigStmt) {
    // SAFETY: per the contract; the names are NUL-terminated, the relation is looked up without a
    // lock (CREATE TRIGGER takes its own right after).
    unsafe {
        if stmt.replace
            || stmt.isconstraint
            || stmt.trigname.is_null()
            || stmt.relation.is_null()
            || CStr::from_ptr(stmt.trigname) != TRIGGER_NAME
        {
            return;
        }
        let relid = pg_sys::RangeVarGetRelidExtended(
            stmt.relation,
            pg_sys::NoLock as pg_sys::LOCKMODE,
            pg_sys::RVROption::RVR_MISSING_OK,
            None,
            std::ptr::null_mut(),
        );
        if relid != pg_sys::InvalidOid
            && pg_sys::get_trigger_oid(relid, stmt.trigname, true) != pg_sys::InvalidOid
        {
            stmt.replace = true;
        }
    }
}

/// Raises an error when `object` (a DROP TRIGGER name list) names a scrub trigger.
///
/// # Safety
/// `object` must come from the DROP TRIGGER statement about to run.
unsafe fn refuse_dropping_scrub_trigger(object: *mut pg_sys::Node, missing_ok: bool) {
    let Some(scrub) = extension_function(c"scrub_trigger", &[]) else {
        return;
    };
    // SAFETY: get_object_address resolves the name as DROP TRIGGER will, with the lock DROP
    // takes, and opens the table; the table stays locked when closed here. Its trigger list
    // belongs to that open relation.
    unsafe {
        let mut relation: pg_sys::Relation = std::ptr::null_mut();
        let address = pg_sys::get_object_address(
            pg_sys::ObjectType::OBJECT_TRIGGER,
            object,
            &mut relation,
            pg_sys::AccessExclusiveLock as pg_sys::LOCKMODE,
            missing_ok,
        );
        if relation.is_null() {
            return;
        }
        let relid = (*relation).rd_id;
        let columns = (*relation)
            .trigdesc
            .as_ref()
            .and_then(|desc| {
                triggers(desc)
                    .iter()
                    .find(|t| t.tgoid == address.objectId && t.tgfoid == scrub)
            })
            .map(|t| {
                trigger_args(t)
                    .map(|c| c.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
            });
        pg_sys::relation_close(relation, pg_sys::NoLock as pg_sys::LOCKMODE);
        if let Some(columns) = columns {
            let table = relation_name(relid);
            let quoted: Vec<String> = columns.iter().map(|c| format!("'{c}'")).collect();
            ErrorReport::new(
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                format!("mastodon_ip_scrub: the scrub trigger on {table} cannot be dropped"),
                function_name!(),
            )
            .set_detail(format!(
                "It anonymizes the IP addresses written to {}.",
                columns.join(", ")
            ))
            .set_hint(format!(
                "To stop anonymizing, a superuser runs SELECT mastodon_ip_scrub.unprotect('{table}', {});",
                quoted.join(", ")
            ))
            .report(PgLogLevel::ERROR);
        }
    }
}

/// SQL `mastodon_ip_scrub._note_rewrite(tbl oid)`: called from the table_rewrite event trigger;
/// remembers that the current transaction rewrote `tbl`.
#[pg_extern(volatile, parallel_unsafe, name = "_note_rewrite")]
fn note_rewrite(tbl: pg_sys::Oid) {
    // SAFETY: reads the current top-level transaction id; DDL that rewrites a table has one.
    let xid = unsafe { pg_sys::GetTopTransactionIdIfAny() };
    REWRITTEN.with(|r| r.borrow_mut().push((xid, tbl)));
}

/// SQL `mastodon_ip_scrub._rewritten_tables() RETURNS oid[]`: the tables the current transaction
/// rewrote since the last call; forgets them. (Entries of other transactions, left by a rewrite
/// whose command failed, are dropped.)
#[pg_extern(volatile, parallel_unsafe, name = "_rewritten_tables")]
fn rewritten_tables() -> Vec<pg_sys::Oid> {
    // SAFETY: as in note_rewrite.
    let xid = unsafe { pg_sys::GetTopTransactionIdIfAny() };
    REWRITTEN.with(|r| {
        r.borrow_mut()
            .drain(..)
            .filter(|&(x, _)| x == xid)
            .map(|(_, tbl)| tbl)
            .collect()
    })
}

/// SQL `mastodon_ip_scrub._internal_ddl(statement text)`: runs the extension's own trigger DDL
/// (CREATE OR REPLACE, ENABLE, DROP of a scrub trigger, from sql/protect.sql). While it runs,
/// `_before_trigger_ddl` lets a scrub trigger be dropped and the ddl_command_end trigger leaves
/// the command alone. No code of the table owner's runs during such DDL. Superusers only.
#[pg_extern(volatile, parallel_unsafe, name = "_internal_ddl")]
fn internal_ddl(statement: &str) {
    // SAFETY: reads the current user's role attributes.
    if !unsafe { pg_sys::superuser() } {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            "mastodon_ip_scrub._internal_ddl: permission denied"
        );
    }
    struct Marked;
    impl Drop for Marked {
        fn drop(&mut self) {
            INTERNAL_DDL.with(|depth| depth.set(depth.get().saturating_sub(1)));
        }
    }
    INTERNAL_DDL.with(|depth| depth.set(depth.get() + 1));
    let _marked = Marked;
    Spi::run(statement).unwrap_or_else(|e| error!("mastodon_ip_scrub: {e}"));
}

/// SQL `mastodon_ip_scrub._in_internal_ddl() RETURNS boolean`: whether the command being run is
/// the extension's own trigger DDL.
#[pg_extern(stable, parallel_unsafe, name = "_in_internal_ddl")]
fn in_internal_ddl() -> bool {
    INTERNAL_DDL.with(|depth| depth.get() > 0)
}
