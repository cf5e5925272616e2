using System;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace UsageBilling.EntityFrameworkCore.Migrations.Sqlite
{
    /// <inheritdoc />
    public partial class UsageRollups : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.CreateTable(
                name: "usage_daily",
                columns: table => new
                {
                    user_id = table.Column<Guid>(type: "TEXT", nullable: false),
                    meter = table.Column<string>(type: "TEXT", maxLength: 100, nullable: false),
                    day = table.Column<long>(type: "INTEGER", nullable: false),
                    quantity = table.Column<long>(type: "INTEGER", nullable: false),
                    event_count = table.Column<long>(type: "INTEGER", nullable: false),
                    reported_quantity = table.Column<long>(type: "INTEGER", nullable: false),
                    reported_count = table.Column<long>(type: "INTEGER", nullable: false),
                    last_reported_at = table.Column<long>(type: "INTEGER", nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_usage_daily", x => new { x.user_id, x.day, x.meter });
                    table.ForeignKey(
                        name: "fk_usage_daily_user",
                        column: x => x.user_id,
                        principalTable: "users",
                        principalColumn: "id",
                        onDelete: ReferentialAction.Cascade);
                });

            migrationBuilder.CreateTable(
                name: "usage_hourly",
                columns: table => new
                {
                    user_id = table.Column<Guid>(type: "TEXT", nullable: false),
                    meter = table.Column<string>(type: "TEXT", maxLength: 100, nullable: false),
                    hour = table.Column<long>(type: "INTEGER", nullable: false),
                    quantity = table.Column<long>(type: "INTEGER", nullable: false),
                    event_count = table.Column<long>(type: "INTEGER", nullable: false),
                    reported_quantity = table.Column<long>(type: "INTEGER", nullable: false),
                    reported_count = table.Column<long>(type: "INTEGER", nullable: false),
                    last_reported_at = table.Column<long>(type: "INTEGER", nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_usage_hourly", x => new { x.user_id, x.hour, x.meter });
                    table.ForeignKey(
                        name: "fk_usage_hourly_user",
                        column: x => x.user_id,
                        principalTable: "users",
                        principalColumn: "id",
                        onDelete: ReferentialAction.Cascade);
                });

            // Existing events: the rollups start in step with the buffer.
            // The rollups filled from the events as this schema version had them: acknowledged = stamped (reported_at).
            // Frozen here, not BackfillUsageRollups(), whose rule (the report is sent) belongs to later schemas; the
            // AcknowledgedByReport migration reconciles the two.
            migrationBuilder.Sql("""
                INSERT INTO usage_hourly (user_id, hour, meter, quantity, event_count, reported_quantity, reported_count, last_reported_at)
                SELECT user_id, (occurred_at / 3600000000) * 3600000000, meter,
                       SUM(quantity), COUNT(*),
                       SUM(CASE WHEN reported_at IS NOT NULL THEN quantity ELSE 0 END), SUM(reported_at IS NOT NULL),
                       MAX(reported_at)
                FROM usage_events
                GROUP BY 1, 2, 3;
                """);
            migrationBuilder.Sql("""
                INSERT INTO usage_daily (user_id, day, meter, quantity, event_count, reported_quantity, reported_count, last_reported_at)
                SELECT user_id, (occurred_at / 86400000000) * 86400000000, meter,
                       SUM(quantity), COUNT(*),
                       SUM(CASE WHEN reported_at IS NOT NULL THEN quantity ELSE 0 END), SUM(reported_at IS NOT NULL),
                       MAX(reported_at)
                FROM usage_events
                GROUP BY 1, 2, 3;
                """);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropTable(
                name: "usage_daily");

            migrationBuilder.DropTable(
                name: "usage_hourly");
        }
    }
}
