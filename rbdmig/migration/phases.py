"""The phases of one move and the recovery decision table."""

from rbdmig import exception

# Phases, in order.  Each is journaled *before* its action runs, so a
# record in phase P says "P's action may have started, P-1's finished".
CLAIMED = 'claimed'      # the volume is claimed; nothing built yet
COPYING = 'copying'      # a partial copy may exist under the move's name
VERIFIED = 'verified'    # the copy is complete and verified, unplaced
RETIRING = 'retiring'    # the source may be under its retired name, whole
PLACED = 'placed'        # the copy may hold the volume's name; source whole
REMOVING = 'removing'    # the source is being stripped: the copy is it
PHASES = (CLAIMED, COPYING, VERIFIED, RETIRING, PLACED, REMOVING)

TRANSITIONS = frozenset([
    # The copy starts (a temporary snapshot, a partial copy may appear).
    (CLAIMED, COPYING),
    # The copy is complete and matched the source.
    (COPYING, VERIFIED),
    # The source is renamed out of every client's reach, whole.
    (VERIFIED, RETIRING),
    # No client holds the retired source: the copy takes the name.
    (RETIRING, PLACED),
    # The copy is the volume: the retired source is stripped, removed.
    (PLACED, REMOVING),
    # Undo: a client used the source, or the name was taken; the source
    # gets its name back and the copy is partial (ours to remove) again.
    (RETIRING, COPYING),
    (PLACED, COPYING),
])

# Who the authority (rbdmig's database standalone, Cinder's volume row
# under Cinder) names as the volume.
SOURCE = 'source'
DEST = 'destination'

# Decisions.
RELEASE = 'release'      # nothing to undo: forget the record
ROLL_BACK = 'roll back'  # remove the copy; the source is the volume
RESTORE = 'restore'      # the source gets its name back, the copy goes
COMPLETE = 'complete'    # the copy is the volume: finish removing the
#                          source, untag the copy
ADOPT = 'adopt'          # COMPLETE, and tell the authority: it names a
#                          source that no longer exists whole
KEEP = 'keep'            # no safe action: leave everything, say so

# (phase, authority) -> decision, when the copy and the source exist as
# the phase says they may.  A thing is removed only when the record
# proves that another complete, verified copy exists and the authority
# names that copy, or, from REMOVING on, when no other complete copy is
# left.  The authority names the source until the move returned: only
# then does rbdmig's database, or Cinder's row, name the destination.
TABLE = {
    (CLAIMED, SOURCE): RELEASE,
    (CLAIMED, DEST): RELEASE,
    (COPYING, SOURCE): ROLL_BACK,
    (COPYING, DEST): ROLL_BACK,    # a partial copy is never the volume
    (VERIFIED, SOURCE): ROLL_BACK,
    (VERIFIED, DEST): COMPLETE,
    (RETIRING, SOURCE): RESTORE,
    (RETIRING, DEST): COMPLETE,
    (PLACED, SOURCE): RESTORE,     # no client was told of the copy
    (PLACED, DEST): COMPLETE,
    (REMOVING, SOURCE): ADOPT,     # stripped: the copy is the only one
    (REMOVING, DEST): COMPLETE,
}


# The service's generic copy (through this host, between any two
# backends) goes through the same phases, persisted in rbdmig's database
# (its ``migration_status``, see :data:`GENERIC_PHASES`): ``migrating``
# is COPYING, ``completing`` is REMOVING.  Its copy is resumable, and its
# source is any backend's: recovery decides on (phase, the source as
# found) instead.
RESUME = 'resume'        # copy on from the checkpoint, verify, complete
WAIT = 'wait'            # change nothing; a later recovery decides

# The source of a generic copy, as recovery finds it.
PRESENT = 'present'      # it opens
MISSING = 'missing'      # its driver says there is no such volume
UNKNOWN = 'unknown'      # its backend did not answer

GENERIC_TABLE = {
    # A copy was running from an intact source: carry on from the
    # checkpoint (re-copying is safe, the source is untouched).
    (COPYING, PRESENT): RESUME,
    # The source is gone (removed by hand): its copy may be all that is
    # left, so nothing deletes it.
    (COPYING, MISSING): KEEP,
    # Whether the source is there cannot be told: touch nothing.
    (COPYING, UNKNOWN): WAIT,
    # The copy was verified before the source's removal began: finish
    # forward, never copy again (the source may be half removed).
    (REMOVING, PRESENT): COMPLETE,
    (REMOVING, MISSING): COMPLETE,
    (REMOVING, UNKNOWN): COMPLETE,
}


def decide_generic(phase, source):
    """Return what recovery does with a generic copy a dead process left.

    :param phase: :data:`COPYING` or :data:`REMOVING`.
    :param source: :data:`PRESENT`, :data:`MISSING` or :data:`UNKNOWN`.
    """
    return GENERIC_TABLE[(phase, source)]


def check_transition(old, new):
    """Raise unless a move may go from phase ``old`` to ``new``.

    :raises InvalidTransition: the table has no ``(old, new)`` pair.
    """
    if (old, new) not in TRANSITIONS:
        raise exception.InvalidTransition(field='phase', old=old, new=new)


def decide(phase, authority, source_whole, copy_complete):
    """Return what recovery does with a move a dead process left.

    :param phase: the journaled phase.
    :param authority: :data:`SOURCE` or :data:`DEST`, what the authority
        names as the volume.
    :param source_whole: the source exists, under its name or its
        retired name (before REMOVING: untouched; from REMOVING on: any
        of it is left).
    :param copy_complete: the verified copy exists (under the move's own
        name, or under the volume's, tagged with the move's id); False
        before VERIFIED.
    :returns: one of the decisions above.
    """
    decision = TABLE[(phase, authority)]
    if decision in (ROLL_BACK, RESTORE) and not source_whole:
        # The source is gone (deleted by someone since): the copy, if
        # complete, is all that is left of the volume.
        return COMPLETE if copy_complete else RELEASE
    if decision in (COMPLETE, ADOPT) and not copy_complete:
        # Nothing complete to finish with: never remove the source.  One
        # already being stripped is left as it is, for a person; with
        # nothing left anywhere, there is nothing to keep.
        return KEEP if phase == REMOVING and source_whole else RELEASE
    return decision

