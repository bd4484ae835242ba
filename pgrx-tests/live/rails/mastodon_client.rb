# A Mastodon-like Rails client: ActiveRecord models shaped like Mastodon's and the calls Mastodon
# makes on the IP columns, from several threads. It checks what it reads back itself (every address
# it wrote is stored masked to the prefixes given) and exits non-zero on any failed write or check.
#
#   ruby mastodon_client.rb --prepared-statements true|false --threads N --users N --ipv4 24 --ipv6 48
#
# Connects with the libpq environment (PGHOST, PGPORT, PGDATABASE, PGUSER): directly to PostgreSQL
# with prepared statements (Mastodon's default), or through PgBouncer in transaction pooling without
# (Mastodon's PREPARED_STATEMENTS=false).
require 'active_record'
require 'ipaddr'
require 'optparse'
require 'securerandom'

OPTIONS = { prepared: true, threads: 4, users: 20, ipv4: 24, ipv6: 48 }
OptionParser.new do |o|
  o.on('--prepared-statements BOOL') { |v| OPTIONS[:prepared] = v == 'true' }
  o.on('--threads N', Integer) { |v| OPTIONS[:threads] = v }
  o.on('--users N', Integer) { |v| OPTIONS[:users] = v }
  o.on('--ipv4 BITS', Integer) { |v| OPTIONS[:ipv4] = v }
  o.on('--ipv6 BITS', Integer) { |v| OPTIONS[:ipv6] = v }
end.parse!

ActiveRecord::Base.establish_connection(
  adapter: 'postgresql', host: ENV.fetch('PGHOST'), port: ENV.fetch('PGPORT', '5432').to_i,
  database: ENV.fetch('PGDATABASE'), username: ENV.fetch('PGUSER'),
  prepared_statements: OPTIONS[:prepared], advisory_locks: false, pool: OPTIONS[:threads] + 1
)
ActiveRecord::Base.default_timezone = :utc

class ApplicationRecord < ActiveRecord::Base
  self.abstract_class = true
end

class Account < ApplicationRecord
  has_one :user
end

class User < ApplicationRecord
  belongs_to :account
  has_many :session_activations, dependent: :destroy
  has_many :login_activities, dependent: :destroy
  has_many :ips, class_name: 'UserIp'
end

# Mastodon's SessionActivation: activate on sign-in, keep at most 10 per user.
class SessionActivation < ApplicationRecord
  belongs_to :user

  def self.activate(user:, session_id:, user_agent:, ip:)
    activation = user.session_activations.create!(session_id: session_id, user_agent: user_agent, ip: ip)
    user.session_activations.order('created_at desc').offset(10).destroy_all
    activation
  end
end

class LoginActivity < ApplicationRecord
  belongs_to :user
end

# Doorkeeper's access tokens, with Mastodon's extension that records the last use.
class OauthAccessToken < ApplicationRecord
  def update_last_used(ip, clock = Time)
    update_columns(last_used_at: clock.now.utc, last_used_ip: ip)
  end
end

class IpBlock < ApplicationRecord
  enum severity: { sign_up_requires_approval: 5000, sign_up_block: 5500, no_access: 9999 }
  scope :containing, ->(value) { where('ip >>= ?', value) }
end

# Mastodon's user_ips view, read by the admin's IP search.
class UserIp < ApplicationRecord
  self.primary_key = :user_id
  belongs_to :user
end

ERRORS = Queue.new
CHECKS = Queue.new

def expected(ip)
  addr = IPAddr.new(ip)
  if addr.ipv4? then addr.mask(OPTIONS[:ipv4]) else addr.mask(OPTIONS[:ipv6]) end
end

def verify(what, stored, written)
  want = expected(written)
  got = stored.nil? ? nil : IPAddr.new(stored.to_s)
  if got == want && got.prefix == (got.ipv4? ? 32 : 128)
    CHECKS << what
  else
    ERRORS << "#{what}: wrote #{written}, stored #{stored.inspect}, expected #{want}"
  end
end

# An address for thread t, user u, request r: IPv4 for even users, IPv6 for odd ones, varying
# inside the kept prefix from one request to the next (the same /24 or /48).
def client_ip(t, u, r)
  if u.even?
    "#{10 + t}.#{u % 256}.#{u / 256}.#{(r * 37 + 1) % 254 + 1}"
  else
    format('2001:db8:%x:%x:%x::%x', t, u, r + 1, (r * 7919 + 1) % 65535 + 1)
  end
end

# What Mastodon does for one user: sign up, confirm, sign in, browse, use the API.
def one_user(t, u)
  ip = client_ip(t, u, 0)
  account = Account.create!(username: "t#{t}u#{u}-#{SecureRandom.hex(3)}")
  user = User.create!(account: account, email: "#{account.username}@example.org", sign_up_ip: ip, approved: true)
  verify('users.sign_up_ip (sign-up)', user.reload.sign_up_ip, ip)

  # E-mail confirmation re-checks the stored sign-up address against approval-only blocks.
  user.update!(confirmed_at: Time.now.utc,
               approved: !IpBlock.sign_up_requires_approval.containing(user.sign_up_ip.to_s).exists?)

  # Sign-in: a session and a login activity.
  session = SessionActivation.activate(user: user, session_id: SecureRandom.hex(16), user_agent: 'Firefox', ip: ip)
  verify('session_activations.ip (sign-in)', session.reload.ip, ip)
  login = LoginActivity.create!(user: user, authentication_method: 'password', success: true, ip: ip, user_agent: 'Firefox',
                                created_at: Time.now.utc)
  verify('login_activities.ip (sign-in)', login.reload.ip, ip)
  user.update!(current_sign_in_at: Time.now.utc)

  # Authenticated web requests: Devise's after_fetch hook, from addresses inside the same prefix.
  # None may write a row version: the stored, truncated address is already what it would store.
  version = session.class.where(id: session.id).pick(Arel.sql('xmin::text'))
  (1..5).each do |r|
    request_ip = client_ip(t, u, r)
    session.update(ip: request_ip) if session.ip != request_ip
  end
  if session.class.where(id: session.id).pick(Arel.sql('xmin::text')) == version
    CHECKS << 'redundant session refreshes wrote no row version'
  else
    ERRORS << "session #{session.id}: a refresh from the same prefix wrote a new row version"
  end
  verify('session_activations.ip (refresh in the same prefix)', session.reload.ip, ip)
  # A request from another network is written, scrubbed.
  moved = u.even? ? "192.0.2.#{u % 250 + 1}" : format('2001:db8:ffff:%x::1', u)
  session.update(ip: moved) if session.ip != moved
  verify('session_activations.ip (refresh from elsewhere)', session.reload.ip, moved)

  # API use: a token, its use recorded at most once a day.
  token = OauthAccessToken.create!(token: SecureRandom.hex(20), resource_owner_id: user.id, scopes: 'read write',
                                   created_at: Time.now.utc)
  token.update_last_used(client_ip(t, u, 9))
  verify('oauth_access_tokens.last_used_ip (token use)', token.reload.last_used_ip, client_ip(t, u, 9))
  user
end

# Bulk writes: Mastodon-style insert_all / upsert_all (Rails skips the models' callbacks).
def bulk(t, users)
  now = Time.now.utc
  rows = users.each_with_index.map do |user, i|
    { user_id: user.id, authentication_method: 'otp', success: false, failure_reason: 'invalid_otp_token',
      ip: client_ip(t, i, 20), user_agent: 'curl', created_at: now }
  end
  LoginActivity.insert_all(rows)
  sessions = users.each_with_index.map do |user, i|
    { session_id: "bulk-#{t}-#{i}", user_id: user.id, user_agent: 'bulk', ip: client_ip(t, i, 21), created_at: now, updated_at: now }
  end
  SessionActivation.upsert_all(sessions, unique_by: :session_id)
  # Again, from other addresses: the ON CONFLICT DO UPDATE path.
  SessionActivation.upsert_all(sessions.each_with_index.map { |s, i| s.merge(ip: client_ip(t, i + 1, 22)) }, unique_by: :session_id)
  sessions.each_with_index do |s, i|
    verify('session_activations.ip (upsert_all)', SessionActivation.find_by!(session_id: s[:session_id]).ip, client_ip(t, i + 1, 22))
  end
  LoginActivity.where(failure_reason: 'invalid_otp_token', user_id: users.map(&:id)).order(:user_id).each do |l|
    i = users.index { |usr| usr.id == l.user_id }
    verify('login_activities.ip (insert_all)', l.ip, client_ip(t, i, 20))
  end
end

def guarded(what)
  yield
rescue StandardError => e
  ERRORS << "#{what}: #{e.class}: #{e.message.lines.first&.strip}"
end

# An admin's block, which the extension must never alter, and one the sign-up check must match.
IpBlock.find_or_create_by!(ip: '203.0.113.7/32') { |b| b.assign_attributes(severity: :no_access, comment: 'one host') }
APPROVAL_RANGE = IPAddr.new('10.0.0.0/8')
IpBlock.find_or_create_by!(ip: '10.0.0.0/8') { |b| b.assign_attributes(severity: :sign_up_requires_approval, comment: 'test networks') }
stored_block = IpBlock.find_by!(comment: 'one host').ip
ERRORS << "ip_blocks.ip altered: #{stored_block.inspect}" unless stored_block == IPAddr.new('203.0.113.7') && stored_block.prefix == 32

threads = (0...OPTIONS[:threads]).map do |t|
  Thread.new do
    ActiveRecord::Base.connection_pool.with_connection do
      users = (0...OPTIONS[:users]).filter_map { |u| guarded("thread #{t} user #{u}") { one_user(t, u) } }
      guarded("thread #{t} bulk writes") { bulk(t, users) }
      # Approval-only blocks at least as wide as the kept prefix still match the stored address.
      users.each do |user|
        user.reload
        blocked = APPROVAL_RANGE.include?(user.sign_up_ip)
        if user.approved == blocked
          ERRORS << "user #{user.id} from #{user.sign_up_ip}: approved #{user.approved}, expected #{!blocked}"
        else
          CHECKS << 'sign-up approval re-check on the stored address'
        end
      end
    end
  end
end
threads.each(&:join)

# The admin's IP search through user_ips: a range as wide as the kept prefix finds the users.
guarded('admin IP search') do
  range = "10.0.0.0/#{OPTIONS[:ipv4]}"
  found = User.joins(:ips).where('user_ips.ip <<= ?', range).distinct.count
  if found.positive? then CHECKS << 'admin IP search finds users by a kept prefix' else ERRORS << "admin IP search for #{range} found nobody" end
end

# Mastodon's daily IP retention job (Scheduler::IpCleanupScheduler), with every row counted as old.
guarded('IP retention job') do
  cutoff = Time.now.utc + 60
  SessionActivation.where('updated_at < ?', cutoff).in_batches.update_all(ip: nil)
  User.where('current_sign_in_at < ?', cutoff).in_batches.update_all(sign_up_ip: nil)
  LoginActivity.where('created_at < ?', cutoff).in_batches.destroy_all
  OauthAccessToken.where('last_used_at < ?', cutoff).in_batches.update_all(last_used_ip: nil)
  left = SessionActivation.where.not(ip: nil).count + User.where.not(sign_up_ip: nil).count +
         LoginActivity.count + OauthAccessToken.where.not(last_used_ip: nil).count
  if left.zero? then CHECKS << 'retention job cleared every address' else ERRORS << "retention job left #{left} addresses" end
end

errors = []
errors << ERRORS.pop until ERRORS.empty?
checks = Hash.new(0)
checks[CHECKS.pop] += 1 until CHECKS.empty?
checks.sort.each { |what, n| puts "ok: #{what} (#{n})" }
if errors.empty?
  puts "ok: #{OPTIONS[:threads]} threads x #{OPTIONS[:users]} users, prepared statements #{OPTIONS[:prepared]}: no write failed"
else
  errors.first(20).each { |e| warn "FAILED: #{e}" }
  warn "#{errors.size} failures"
  exit 1
end
