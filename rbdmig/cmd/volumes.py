"""rbdmig backends, create, list, show, delete, import."""

import sys

from rbdmig import exception
from rbdmig.cmd import context
from rbdmig.cmd import output


def add_parsers(sub):
    p = sub.add_parser('backends',
                       help="each backend's capabilities and free space")
    p.add_argument('--format', choices=('table', 'json'), default='table')
    p = sub.add_parser('create', help='create a volume; print its id')
    p.add_argument('--backend', required=True)
    p.add_argument('--size', required=True, type=int, metavar='GIB')
    p.add_argument('--name', help='a display name')
    p.add_argument('--spec', action='append', default=[], metavar='K=V',
                   help="an extra spec destinations' capabilities must "
                        'meet, as in a Cinder volume type (repeatable)')
    p = sub.add_parser('list', help='the volumes and their migration status')
    p.add_argument('--backend')
    p.add_argument('--migration-status')
    p.add_argument('--format', choices=('table', 'json'), default='table')
    p = sub.add_parser('show', help='a volume and its latest migration, '
                                    'with its progress')
    p.add_argument('volume')
    p.add_argument('--format', choices=('text', 'json'), default='text')
    p = sub.add_parser('delete', help='delete a volume')
    p.add_argument('volume')
    p = sub.add_parser('import', help="adopt a backend's existing images "
                                      'into the database')
    p.add_argument('backend')


def _specs(pairs):
    specs = {}
    for pair in pairs:
        key, sep, value = pair.partition('=')
        if not sep or not key:
            raise exception.InvalidInput(
                reason='--spec takes NAME=VALUE, not %r.' % pair)
        specs[key] = value
    return specs


def run(args, out=None):
    out = out or sys.stdout
    svc = context.load(args)
    if args.command == 'backends':
        found = svc.backends()
        if args.format == 'json':
            out.write(output.dumps(found) + '\n')
        else:
            output.table(found, ['backend', 'storage_protocol',
                                 'backend_state', 'free_capacity_gb',
                                 'total_capacity_gb',
                                 'rbd_migration_methods'], out)
    elif args.command == 'create':
        record = svc.create(args.backend, args.size, name=args.name,
                            extra_specs=_specs(args.spec))
        out.write(record.id + '\n')
    elif args.command == 'list':
        status = ... if args.migration_status is None else (
            None if args.migration_status == 'none'
            else args.migration_status)
        rows = svc.list(backend=args.backend, migration_status=status)
        if args.format == 'json':
            out.write(output.dumps(rows) + '\n')
        else:
            output.table(rows, ['id', 'display_name', 'backend', 'size',
                                'status', 'migration_status'], out)
    elif args.command == 'show':
        found = svc.show(args.volume)
        if args.format == 'json':
            out.write(output.dumps(found) + '\n')
        else:
            _show(found, out)
    elif args.command == 'delete':
        svc.delete(args.volume)
        out.write('deleted %s\n' % args.volume)
    else:
        adopted = svc.adopt(args.backend)
        for record in adopted:
            out.write('adopted %s (%s, %d GiB)\n' % (record.id, record.name,
                                                    record.size_gib))
        out.write('%d image(s) adopted from %s\n' % (len(adopted),
                                                     args.backend))
    return 0


def _show(found, out):
    for key in ('id', 'display_name', 'name', 'backend', 'size', 'status',
                'migration_status'):
        out.write('%-17s %s\n' % (key + ':', found[key]))
    migration = found['progress']
    if migration:
        out.write('%-17s %s to %s (%s, %s): %s\n' % (
            'last migration:', migration['migration'],
            migration['destination'], migration['path'] or 'path pending',
            migration['method'] or '-', migration['status']))
        out.write('%-17s %s\n' % ('progress:', output.describe(migration)))
        if migration['error']:
            out.write('%-17s %s\n' % ('error:', migration['error']))
